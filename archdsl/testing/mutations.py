"""Broken specs: a valid network with one mutation that is certain to be an error."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import strategies as st

from archdsl.testing.networks import (
    Network,
    networks,
)

# Broken specs ------------------------------------------------------------------------------------


def _append(text: str, line: str) -> str:
    """Add a statement at the end of the network (the last item of a generated text)."""
    end = text.rstrip().rfind("}")
    return f"{text[:end]}    {line}\n{text[end:]}"


def _statement_lines(text: str) -> list[int]:
    """Indices of lines inside the network body (after its header, before its `}`)."""
    lines = text.split("\n")
    start = max(i for i, line in enumerate(lines) if line.startswith("network "))
    end = max(i for i, line in enumerate(lines) if line == "}")
    return list(range(start + 1, end))


def _m_unclosed(network: Network, draw: Any) -> str:
    text = network.text
    end = text.rfind("}")
    start = text.find("{", text.rfind("\nnetwork ") + 1) + 1
    cut = draw(st.integers(start, end - 1))
    return text[:cut]


def _m_stray_token(network: Network, draw: Any) -> str:
    lines = network.text.split("\n")
    index = draw(st.sampled_from(_statement_lines(network.text)))
    token = draw(st.sampled_from([")", "->", ",", "=", "..", ":"]))
    stripped = lines[index].lstrip()
    lines[index] = lines[index][: len(lines[index]) - len(stripped)] + f"{token} {stripped}"
    return "\n".join(lines)


def _m_bad_character(network: Network, draw: Any) -> str:
    text = network.text
    position = draw(st.integers(0, len(text)))
    char = draw(st.sampled_from("@$?!;&|~^`'[]\\"))
    if char == "\\":
        char = "\\x"  # a backslash not ending a line
    return text[:position] + char + text[position:]


def _m_unknown_layer(network: Network, draw: Any) -> str:
    return _append(
        network.text,
        draw(
            st.sampled_from(
                [
                    "conv2d 3 3x3",
                    "relux",
                    "Conv 3 3x3",
                    "maxpooling 2",
                    "fully_connected 10",
                    "batch_norm",
                    "softmax2",
                ]
            )
        ),
    )


def _m_wrong_check(network: Network, draw: Any) -> str:
    out = network.output_shape
    wrong = (out[0] + draw(st.integers(1, 5)), *out[1:])
    check = "x".join(map(str, wrong)) if len(wrong) > 1 else str(wrong[0])
    return _append(network.text, f"identity : {check}")


def _m_window_too_big(network: Network, draw: Any) -> str:
    if len(network.output_shape) == 3:
        window = draw(st.integers(600, 999))
        layer = draw(
            st.sampled_from([f"conv 1 {window}x{window} valid", f"maxpool {window}x{window}"])
        )
        return _append(network.text, layer)
    return _append(network.text, draw(st.sampled_from(["lrn", "conv 4 3x3", "globalavgpool"])))


def _m_duplicate_name(network: Network, draw: Any) -> str:
    return _append(_append(network.text, "relu as twice"), "relu as twice")


def _m_bad_value(network: Network, draw: Any) -> str:
    return _append(
        network.text,
        draw(
            st.sampled_from(
                [
                    "dense nope",
                    "dense 4 // 0",
                    "dense 4 / 3",
                    "dense 99999999999",
                    "dense 0",
                    'dropout "half"',
                    "dropout 1.5",
                    "dense 2x2",
                    "conv 4 3x3 padding = wide",
                    "conv 6 3x3 groups = 4",
                    "dense -3",
                    "repeat -1 { relu }",
                    "dense 3.5",
                    "residual shortcut = sideways { relu }",
                    "batchnorm momentum = 2.0",
                ]
            )
        ),
    )


def _m_unknown_argument(network: Network, draw: Any) -> str:
    return _append(
        network.text,
        draw(
            st.sampled_from(
                [
                    "relu strength = 2",
                    "dense 4 bias = false units = 5",
                    "conv 4 3x3 strides = 2",
                    "dense",
                    "conv 4",
                    "maxpool",
                    "dense 4 8",
                    "relu 3",
                ]
            )
        ),
    )


def _m_no_input(network: Network, draw: Any) -> str:
    lines = network.text.split("\n")
    index = next(i for i in _statement_lines(network.text) if lines[i].lstrip().startswith("input"))
    stripped = lines[index].lstrip()
    rest = stripped.split(" -> ", 1)
    if len(rest) == 2:
        lines[index] = lines[index][: len(lines[index]) - len(stripped)] + rest[1]
    else:
        del lines[index]
    return "\n".join(lines)


def _m_second_input(network: Network, draw: Any) -> str:
    return _append(network.text, "input 8x8x3")


def _m_shortcut_mismatch(network: Network, draw: Any) -> str:
    out = network.output_shape
    return _append(network.text, f"residual shortcut = identity {{ dense {out[-1] + 1} }}")


def _m_merge_mismatch(network: Network, draw: Any) -> str:
    out = network.output_shape
    if len(out) == 3:
        return _append(
            network.text, "concat {\n        branch { identity }\n        branch { flatten }\n    }"
        )
    return _append(
        network.text,
        f"add {{\n        branch {{ dense {out[-1] + 1} }}\n        branch {{ identity }}\n    }}",
    )


def _m_unknown_block(network: Network, draw: Any) -> str:
    return _append(
        network.text, draw(st.sampled_from(["nosuchblock(3)", "Net()", "resnet_stage(64, 2)"]))
    )


def _m_missing_import(network: Network, draw: Any) -> str:
    path = draw(
        st.sampled_from(
            ["missing_file.arch", "https://example.com/x.arch", "../../nowhere/else.arch", "."]
        )
    )
    return f'import "{path}"\n\n{network.text}'


def _m_bad_tap(network: Network, draw: Any) -> str:
    return _append(network.text, draw(st.sampled_from(["from nowhere -> relu", "from t -> relu"])))


def _m_empty_construct(network: Network, draw: Any) -> str:
    return _append(
        network.text,
        draw(
            st.sampled_from(
                [
                    "residual {}",
                    "concat {\n        branch { relu }\n    }",
                    "add {}",
                    "aux head {}",
                    "aux head weight = heavy { dense 2 }",
                    "use Nothing",
                ]
            )
        ),
    )


MUTATIONS: dict[str, Callable[[Network, Any], str]] = {
    "unclosed": _m_unclosed,
    "stray_token": _m_stray_token,
    "bad_character": _m_bad_character,
    "unknown_layer": _m_unknown_layer,
    "wrong_check": _m_wrong_check,
    "window_too_big": _m_window_too_big,
    "duplicate_name": _m_duplicate_name,
    "bad_value": _m_bad_value,
    "unknown_argument": _m_unknown_argument,
    "no_input": _m_no_input,
    "second_input": _m_second_input,
    "shortcut_mismatch": _m_shortcut_mismatch,
    "merge_mismatch": _m_merge_mismatch,
    "unknown_block": _m_unknown_block,
    "missing_import": _m_missing_import,
    "bad_tap": _m_bad_tap,
    "empty_construct": _m_empty_construct,
}
"""Mutations of a valid generated spec, each certain to make it an error."""


@st.composite
def broken_spec_texts(
    draw: Any,
    *,
    mutations: Sequence[str] | None = None,
    **network_options: Any,
) -> str:
    """Spec texts that must be rejected: a valid network with one breaking mutation.

    Requires the hypothesis package.

    Every mutation is certain to be an error (a syntax error, an unknown name, a bad
    value or a shape that does not fit), so `archdsl check` must exit 1 with a
    positioned diagnostic, and the API must raise `ArchError`, for every draw.

    Args:
        mutations: names from `MUTATIONS` to draw from (default: all).
        **network_options: passed to `networks()`.
    """
    network = draw(networks(**network_options))
    name = draw(st.sampled_from(sorted(mutations or MUTATIONS)))
    return MUTATIONS[name](network, draw)

"""The op table is the one list of layers: every registry covers it, the grammar names none.

Also the worked example of docs/internals.md end to end: `hardswish`, `hardsigmoid` and a
`multiply` merge in a squeeze-and-excitation block, parsed, formatted, drawn and run.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from archdsl.backend.model import LOWERINGS, compile_graph
from archdsl.frontend import build_graph_text
from archdsl.graph import ops
from archdsl.lang.grammar import keywords
from archdsl.lang.kinds import KINDS, coerce, parse_kind, to_expr
from archdsl.lang.parser import parse
from archdsl.lang.values import evaluate
from archdsl.testing import KIND_VALUES, OP_STRATEGIES
from archdsl.tools.draw import FILLS, fill_of, to_dot
from archdsl.tools.fmt import format_expr, format_text

OP_CLASSES = list(ops.OPS.values())


@pytest.mark.parametrize("cls", OP_CLASSES, ids=lambda c: c.name)
def test_every_op_has_a_lowering_a_strategy_and_a_drawing_style(cls: type[ops.Op]) -> None:
    assert ops.OPS[cls.name] is cls
    assert cls in LOWERINGS
    assert cls in OP_STRATEGIES
    assert fill_of(cls).startswith("#")


def test_registries_hold_only_registered_ops() -> None:
    assert set(LOWERINGS) == set(OP_CLASSES) == set(OP_STRATEGIES)
    bases = {ops.Activation, ops.Merge}
    assert set(FILLS) - bases <= set(OP_CLASSES)


def test_an_op_family_without_a_style_is_refused() -> None:
    class Upsample(ops.Op):
        name = "upsample"

    with pytest.raises(KeyError, match="no drawing style for `upsample`"):
        fill_of(Upsample)


def test_the_grammar_names_no_op() -> None:
    # `residual { body }` is a construct (one body plus a shortcut mode), not a merge:
    # the only keyword that is also the spelling of the node it makes.
    assert set(keywords()) & set(ops.OPS) == {"residual"}


def test_merges_are_the_ops_that_take_branches() -> None:
    merges = {c.name for c in OP_CLASSES if issubclass(c, ops.Merge)}
    assert merges == {"add", "concat", "multiply"}
    assert all(ops.OPS[m].arity is None and not ops.OPS[m].user_visible for m in merges)


SE = """\
network SE {
    input 4x5x3
    multiply {
        branch { identity }
        branch { globalavgpool -> dense 3 as fc -> hardsigmoid }
    } as gate -> hardswish
}
"""


def _hardsigmoid(x: np.ndarray) -> np.ndarray:
    return np.clip(x + 3, 0, 6) / 6


def test_squeeze_and_excitation_runs_as_numpy_computes_it() -> None:
    graph = build_graph_text(SE)
    assert graph.node("gate").shape == (4, 5, 3)
    model = compile_graph(graph)
    params, state = model.init(jax.random.key(0))
    x = np.random.default_rng(0).normal(size=(2, 4, 5, 3)).astype(np.float32) * 3
    out, _ = model.apply(params, state, x)
    fc = params["gate.branch2.fc"]
    squeeze = x.mean(axis=(1, 2)) @ np.asarray(fc["kernel"]) + np.asarray(fc["bias"])
    gated = x * _hardsigmoid(squeeze)[:, None, None, :]
    expected = gated * _hardsigmoid(gated)
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-5)


def test_squeeze_and_excitation_formats_and_draws() -> None:
    assert format_text(SE) == SE
    dot = to_dot(build_graph_text(SE))
    assert f'fillcolor="{FILLS[ops.Merge]}"' in dot.split('"gate" [')[1].split("\n")[0]
    assert 'ordering="in"' in dot.split('"gate" [')[1].split("\n")[0]


def test_every_attribute_kind_has_values_to_draw() -> None:
    assert set(KIND_VALUES) == set(KINDS)


def test_every_op_attribute_has_a_known_kind() -> None:
    for cls in OP_CLASSES:
        for field in dataclasses.fields(cls):
            assert parse_kind(field.metadata["kind"])[0] in KINDS.values(), (cls.name, field.name)


@pytest.mark.parametrize("name", sorted(KINDS))
@given(data=st.data())
def test_a_value_written_back_as_syntax_coerces_to_itself(name: str, data: st.DataObject) -> None:
    spec = "enum:auto|projection" if name == "enum" else name
    value = data.draw(KIND_VALUES[name])
    style = data.draw(st.integers(0, 3))
    expr = to_expr(spec, value, style)
    assert coerce(spec, evaluate(expr, {}), "it") == value
    # and through the printer and the parser, as a spec writes it
    text = f"network N {{ input {format_expr(expr)} }}"
    assert parse(text).items[0].body[0].steps[0].args[0] == expr  # type: ignore[union-attr]

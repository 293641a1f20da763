"""Lowering: stable names, block scopes, taps, aux heads, frozen layers, `use ... upto`."""

from __future__ import annotations

from pathlib import Path

import pytest

from archdsl.errors import ArchError
from archdsl.frontend import build_graph, build_graph_text
from archdsl.graph.ops import Concat, Conv, Project, Residual, ZeroPad

BLOCKS = """
block basic(c, stride = 1) {
    residual {
        conv c 3x3 stride stride padding 1 bias = false as conv1 -> batchnorm as bn1 -> relu
        conv c 3x3 padding 1 bias = false as conv2 -> batchnorm as bn2
    } -> relu
}
block stage(c, n, stride = 1) {
    basic(c, stride)
    repeat n - 1 { basic(c) }
}
"""


def test_automatic_names_count_per_op() -> None:
    g = build_graph_text("network N {\n input 8x8x1\n conv 2 3x3 -> relu\n conv 2 3x3 -> relu\n}")
    assert g.order() == ["input", "conv", "relu", "conv_1", "relu_1"]


def test_automatic_names_avoid_later_explicit_names() -> None:
    g = build_graph_text("network N {\n input 8\n relu\n tanh as relu_1\n relu\n}")
    assert g.order() == ["input", "relu", "relu_1", "relu_2"]


def test_block_scopes_follow_torchvision() -> None:
    text = (
        BLOCKS
        + "network N {\n input 16x16x8\n stage(8, 2) as layer1\n stage(16, 2, 2) as layer2\n}"
    )
    g = build_graph_text(text)
    names = set(g.order())
    for expected in [
        "layer1.0.conv1",
        "layer1.1.bn2",
        "layer2.0.conv1",
        "layer2.1.relu_1",
        "layer2.0.residual",
        "layer2.0.residual.shortcut",
    ]:
        assert expected in names, expected
    assert "layer1.0.residual.shortcut" not in names
    assert g.node("layer2.0.conv1").shape == (8, 8, 16)


def test_unnamed_blocks_are_numbered_and_repeat_iterations_scoped() -> None:
    text = "block b() { relu }\nnetwork N {\n input 8\n b()\n repeat 2 { b() }\n repeat 2 as r { tanh }\n}"
    g = build_graph_text(text)
    assert g.order() == ["input", "0.relu", "1.relu", "2.relu", "r.0.tanh", "r.1.tanh"]


def test_repeat_zero_times_is_empty() -> None:
    g = build_graph_text("network N(n = 1) {\n input 8\n repeat n - 1 { relu }\n tanh\n}")
    assert g.order() == ["input", "tanh"]


def test_taps_and_concat_branch_names() -> None:
    text = """network N {
    input 8x8x4 as x
    conv 2 1x1 as a
    from x -> conv 3 1x1 as b
    concat {
        branch { from a }
        branch as right { from b -> relu }
    } as merged : 8x8x5
}"""
    g = build_graph_text(text)
    merged = g.node("merged")
    assert isinstance(merged.op, Concat)
    assert merged.inputs == ("a", "merged.right.relu")
    assert g.output == "merged"


def test_aux_head_is_off_the_main_path_with_its_weight() -> None:
    text = """network N {
    input 8
    dense 4 as trunk
    aux side weight = 0.25 { dense 3 -> softmax }
    dense 2 -> softmax
}"""
    g = build_graph_text(text)
    head = g.aux["side"]
    assert head.weight == 0.25 and head.output == "side.softmax"
    assert g.node("side.dense").aux == "side" and g.node("side.dense").inputs == ("trunk",)
    assert g.output == "softmax" and g.node("dense").inputs == ("trunk",)


def test_frozen_statement_marks_every_step() -> None:
    g = build_graph_text("network N {\n input 8\n frozen dense 4 -> relu\n dense 2\n}")
    assert [g.node(n).frozen for n in g.order()] == [False, True, True, False]


def test_residual_modes() -> None:
    base = "network N {\n input 8x8x4\n residual%s {\n conv 8 3x3 stride 2 same\n }\n}"
    auto = build_graph_text(base % "")
    assert isinstance(auto.node("residual.shortcut").op, Project)
    assert auto.node("residual.shortcut").synthetic
    zero = build_graph_text(base % " shortcut = zeropad")
    assert isinstance(zero.node("residual.shortcut").op, ZeroPad)
    same = "network N {\n input 8x8x4\n residual%s {\n conv 4 3x3 same\n }\n}"
    assert "residual.shortcut" not in build_graph_text(same % "")
    forced = build_graph_text(same % " shortcut = projection")
    assert isinstance(forced.node("residual.shortcut").op, Project)
    assert isinstance(forced.node("residual").op, Residual)


def test_network_arguments_override_defaults() -> None:
    g = build_graph_text("network N(classes = 10) {\n input 8\n dense classes\n}", classes=3)
    assert g.node("dense").shape == (3,)
    with pytest.raises(ArchError, match="has no parameter `clases`"):
        build_graph_text("network N(classes = 10) {\n input 8\n dense classes\n}", clases=3)


def test_use_upto_frozen_keeps_names_and_freezes(tmp_path: Path) -> None:
    (tmp_path / "base.arch").write_text(
        BLOCKS
        + """
network Base(classes = 100) {
    input 16x16x3
    conv 8 3x3 same as stem
    stage(8, 2) as layer1
    stage(16, 2, 2) as layer2
    globalavgpool as pool
    dense classes as fc
}
"""
    )
    (tmp_path / "new.arch").write_text("""import "base.arch"
network Transfer(classes = 5) {
    use Base upto pool frozen upto layer1
    dense classes as head
}
""")
    g = build_graph(tmp_path / "new.arch")
    assert "fc" not in g and g.node("head").inputs == ("pool",)
    assert g.node("stem").frozen and g.node("layer1.1.conv2").frozen
    assert not g.node("layer2.0.conv1").frozen and not g.node("head").frozen
    assert g.name == "Transfer"


def test_integer_arithmetic_in_arguments() -> None:
    text = "block b(c) { conv c * 4 1x1 -> conv c / 2 1x1 -> conv (c + 1) // 2 1x1 }\n"
    g = build_graph_text(text + "network N {\n input 4x4x3\n b(6)\n}")
    assert [g.node(n).op.filters for n in g.order()[1:]] == [24, 3, 3]  # type: ignore[attr-defined]


def test_conv_attributes_bind_by_word_keyword_and_flag() -> None:
    g = build_graph_text(
        "network N {\n input 9x9x4\n conv 8 3x3 stride 2 same groups = 2 dilation 1 bias = false\n}"
    )
    op = g.node("conv").op
    assert op == Conv(8, (3, 3), (2, 2), "same", False, 2, (1, 1))
    assert g.node("conv").shape == (5, 5, 8)

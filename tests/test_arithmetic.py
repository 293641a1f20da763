"""Argument arithmetic that reads the network: `in.c`, `in.h`, `in.w`, `make_divisible`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from archdsl.errors import ArchShapeError
from archdsl.frontend import build_graph_text
from archdsl.graph.report import build_report
from archdsl.lang.parser import parse
from archdsl.lang.values import make_divisible
from archdsl.tools.fmt import format_text

SE = """\
block se(r = 4, c = in.c) {
    residual shortcut = identity {
        conv make_divisible(c / r) 1x1 as fc1 -> relu -> conv in.c 1x1 as fc2
    }
}

block pool_to_one() {
    avgpool in.h x in.w as pool
}

network N {
    input 16x12x48
    se() as a                           : 16x12x48
    conv 20 3x3 stride 2 padding 1 -> se(r = 5) as b : 8x6x20
    pool_to_one() as p                  : 1x1x20
}
"""


def test_in_reads_the_input_of_the_block_being_called():
    graph = build_graph_text(SE)
    assert graph.node("a.fc1").op.filters == 16  # make_divisible(48 / 4)
    assert graph.node("a.fc2").op.filters == 48
    assert graph.node("b.fc1").op.filters == 8  # make_divisible(20 / 5): never below 8
    assert graph.node("b.fc2").op.filters == 20
    assert graph.node("p.pool").op.window == (8, 6)


def test_in_at_a_call_site_is_the_callers_input():
    text = """\
block widen(c) {
    conv c 1x1 as conv
}
block outer() {
    conv 5 1x1 as first
    widen(in.c * 2) as inner
}
network N {
    input 4x4x3
    outer() as o : 4x4x6
}
"""
    assert build_graph_text(text).node("o.inner.conv").op.filters == 6


def test_a_shape_error_before_the_block_is_reported_where_it_happens():
    text = """\
block b() {
    conv in.c 1x1
}
network N {
    input 4x4x3
    conv 8 5x5 as big
    b()
}
"""
    with pytest.raises(ArchShapeError) as caught:
        build_graph_text(text)
    assert str(caught.value).startswith("<string>:6:5: error: `conv`: the 5x5 window is larger")


def test_report_counts_what_in_resolved_to():
    report = build_report(build_graph_text(SE))
    rows = {r.name: r for r in report.rows}
    assert rows["a.fc1"].params == 48 * 16 + 16
    assert rows["b.fc2"].params == 8 * 20 + 20


def test_fmt_keeps_in_and_functions():
    formatted = format_text(SE)
    assert "conv make_divisible(c / r) 1x1 as fc1" in formatted
    assert "block se(r = 4, c = in.c)" in formatted
    assert "avgpool in.h x in.w as pool" in formatted
    assert parse(formatted) == parse(SE)


@pytest.mark.parametrize(
    ("value", "divisor", "expected"),
    [
        # torchvision's _make_divisible at MobileNetV2's width 0.35 and MobileNetV3's SE
        (32 * 0.35, 8, 16),  # 8 would be below 90% of 11.2
        (96 * 0.35, 8, 32),
        (16, 8, 16),
        (240 / 4, 8, 64),  # MobileNetV3 large, SE of a 240-channel block
        (72 / 4, 8, 24),
        (11.9, 4, 12),
        (1, 8, 8),
    ],
)
def test_make_divisible_matches_torchvision(value: float, divisor: int, expected: int):
    assert make_divisible(value, divisor) == expected


@given(st.floats(min_value=0, max_value=1e6), st.integers(min_value=1, max_value=64))
def test_make_divisible_rounds_to_a_multiple_never_below_90_percent(value: float, divisor: int):
    result = make_divisible(value, divisor)
    assert result % divisor == 0
    assert result >= divisor
    assert result >= 0.9 * value
    assert result <= max(divisor, value + divisor)

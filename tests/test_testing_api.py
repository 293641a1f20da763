"""`archdsl.testing`: the strategies draw what they promise; the helpers work in a user's test."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archdsl import testing as t
from archdsl.backend.model import LOWERINGS
from archdsl.errors import ArchError
from archdsl.frontend import build_graph_text
from archdsl.graph import ops
from archdsl.graph.ir import Graph
from archdsl.graph.report import build_report
from archdsl.lang.parser import parse
from archdsl.lang.syntax import Chain, NetworkDef, Spec
from archdsl.tools.fmt import unparse

POSITIONED = re.compile(r"^[^\n]+:\d+:\d+: error: ")


def test_every_op_has_a_strategy_and_a_lowering() -> None:
    assert set(ops.OPS.values()) == set(t.OP_STRATEGIES) == set(LOWERINGS)


@given(t.shapes())
def test_shapes_are_images_or_vectors(shape: tuple[int, ...]) -> None:
    assert len(shape) in (1, 3)
    assert all(1 <= d <= 32 for d in shape)


def test_shapes_rejects_other_ranks() -> None:
    with pytest.raises(ValueError, match="ranks are 3"):
        t.shapes(ranks=(2,)).example()


@given(st.data())
def test_ops_for_draws_ops_valid_for_the_shape(data: st.DataObject) -> None:
    shape = data.draw(t.shapes(max_side=12))
    op = data.draw(t.ops_for(shape))
    assert op.user_visible and op.name != "input"
    out = op.infer(shape)
    assert all(d >= 1 for d in out)


@given(st.data(), st.integers(1, 3))
def test_ops_for_spatial_plan(data: st.DataObject, stride: int) -> None:
    shape = data.draw(t.shapes(ranks=(3,), max_side=12))
    op = data.draw(t.ops_for(shape, spatial=stride))
    out = op.infer(shape)
    assert len(out) == 3
    assert out[:2] == tuple(-(-side // stride) for side in shape[:2])


@given(st.data())
def test_internal_ops_are_valid_on_their_operands(data: st.DataObject) -> None:
    shape = data.draw(t.shapes(max_side=8))
    op = data.draw(t.ops_for(shape, names=["add", "concat", "residual", "project", "zeropad"]))
    if op.arity == 1:
        assert len(op.infer(shape)) == len(shape)
    else:
        op.infer(shape, shape)


def test_ops_for_unknown_name() -> None:
    with pytest.raises(ValueError, match="no strategy"):
        t.ops_for((8, 8, 3), names=["convolution"])


@given(st.data(), st.integers(0, 255))
def test_op_call_spells_the_op_so_that_lowering_rebuilds_it(
    data: st.DataObject, style: int
) -> None:
    shape = data.draw(t.shapes(max_side=10))
    op = data.draw(t.ops_for(shape))
    call = t.op_call(op, style=style)
    spec = unparse(
        Spec(
            items=(
                NetworkDef(
                    name=t._ident("N"),
                    params=(),
                    body=(
                        Chain(
                            source=None,
                            steps=(t.op_call(ops.Input(shape)), call),
                            check=None,
                            span=t._SPAN,
                        ),
                    ),
                    span=t._SPAN,
                ),
            ),
            source=t._SOURCE,
            span=t._SPAN,
        )
    )
    graph = build_graph_text(spec)
    (name,) = [n for n in graph.order() if not isinstance(graph.node(n).op, ops.Input)]
    assert graph.node(name).op == op, spec


@given(t.networks())
def test_networks_compile_to_what_they_promise(network: t.Network) -> None:
    assert parse(network.text) == network.spec
    graph = network.graph()
    assert graph.node(graph.inputs[0]).shape == network.input_shape
    assert graph.node(graph.output).shape == network.output_shape
    assert build_report(graph).params == network.params
    for name, (low, high) in network.arguments.items():
        for value in {low, high}:
            graph = network.graph(**{name: value})
            assert graph.node(graph.inputs[0]).shape[:2] == (value, value)


@given(t.networks(ranks=(1,), blocks=False, aux=False, params=False, max_depth=1))
def test_network_options_narrow_what_is_drawn(network: t.Network) -> None:
    assert len(network.input_shape) == 1
    assert "block" not in network.text and "aux" not in network.text
    assert "network Net {" in network.text


@given(t.graphs(max_depth=1))
def test_graphs_are_checked(graph: Graph) -> None:
    assert all(node.shape is not None for _, node in graph.items())


@given(t.spec_texts(max_depth=1))
def test_spec_texts_are_valid(text: str) -> None:
    build_graph_text(text)


@given(t.broken_spec_texts())
def test_broken_spec_texts_are_errors_with_a_position(text: str) -> None:
    with pytest.raises(ArchError) as caught:
        build_graph_text(text, "broken.arch")
    assert POSITIONED.match(str(caught.value)), str(caught.value)


@pytest.mark.parametrize("mutation", sorted(t.MUTATIONS))
def test_each_mutation_breaks(mutation: str) -> None:
    @settings(max_examples=5, database=None)
    @given(t.broken_spec_texts(mutations=[mutation], max_depth=1))
    def check(text: str) -> None:
        with pytest.raises(ArchError):
            build_graph_text(text, "broken.arch")

    check()


# A user's spec and test -----------------------------------------------------------------------

SPEC = """\
network Net(size = 32 in 8..48, width = 8 in 4..16, classes = 10) {
    input size x size x 3
    conv width 3x3 same -> relu -> maxpool 2x2 stride 2 same
    conv width * 2 3x3 same -> relu
    globalavgpool
    dense classes -> softmax
}
"""


@pytest.fixture(scope="module")
def user_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("user") / "net.arch"
    path.write_text(SPEC)
    return path


def test_spec_params_draws_within_the_ranges(user_spec: Path) -> None:
    @settings(max_examples=30, database=None)
    @given(t.spec_params(user_spec))
    def check(params: dict[str, int]) -> None:
        assert set(params) == {"size", "width"}
        assert 8 <= params["size"] <= 48 and 4 <= params["width"] <= 16

    check()


def test_given_spec_params_and_check_spec(user_spec: Path) -> None:
    seen: list[dict[str, int]] = []

    @settings(max_examples=10, database=None)
    @t.given_spec_params(user_spec)
    def test_user(params: dict[str, int]) -> None:
        graph = t.check_spec(user_spec, backend=False, **params)
        seen.append(params)
        assert graph.node(graph.output).shape == (10,)

    test_user()
    assert seen


def test_check_spec_with_the_backend(user_spec: Path) -> None:
    graph = t.check_spec(user_spec, backend=True, size=9, width=5)
    assert graph.node(graph.inputs[0]).shape == (9, 9, 3)


def test_check_spec_raises_the_diagnostic(user_spec: Path) -> None:
    with pytest.raises(ArchError, match=r"takes `size` in 8..48, got 99"):
        t.check_spec(user_spec, size=99)


def test_check_backend_catches_a_disagreement(
    user_spec: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph = t.check_spec(user_spec, backend=False)
    node = graph.node(graph.output)
    import dataclasses

    graph.replace(graph.output, dataclasses.replace(node, shape=(11,)))
    with pytest.raises(AssertionError, match="front end predicts 11"):
        t.check_backend(user_spec, graph)


def test_spec_params_refuses_a_parameter_it_cannot_draw(tmp_path: Path) -> None:
    path = tmp_path / "net.arch"
    path.write_text("network N(k) {\n    input 8 -> dense k\n}\n")
    with pytest.raises(ArchError, match="no default and no range"):
        t.spec_params(path)


def test_spec_params_range_from_earlier_parameter(tmp_path: Path) -> None:
    path = tmp_path / "net.arch"
    path.write_text(
        "network N(a = 4 in 2..6, b = 2 in 1..a) {\n    input 8 -> dense a -> dense b\n}\n"
    )

    @settings(max_examples=30, database=None)
    @given(t.spec_params(path))
    def check(params: dict[str, int]) -> None:
        assert 1 <= params["b"] <= params["a"] <= 6

    check()


def test_param_counts_match_op_param_shapes() -> None:
    @settings(max_examples=15, database=None)
    @given(t.graphs(max_depth=1))
    def check(graph: Graph) -> None:
        total = 0
        for _, node in graph.items():
            shapes = [graph.node(i).shape for i in node.inputs]
            total += sum(math.prod(v) for v in node.op.param_shapes(*shapes).values())
        assert build_report(graph).params == total

    check()

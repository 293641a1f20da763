"""Passes: shape inference, projection insertion (each mode, idempotent), verify, text dump."""

from __future__ import annotations

import dataclasses

import pytest

from archdsl.errors import ArchShapeError
from archdsl.frontend import build_graph_text
from archdsl.graph.ir import Node, format_graph, verify
from archdsl.graph.lower import lower
from archdsl.graph.ops import Dense, Relu
from archdsl.graph.passes import infer_shapes, insert_projections, run_pipeline
from archdsl.lang.loader import load_text

SPEC = """network Small(classes = 3) {
    input 8x8x4
    residual {
        conv 8 3x3 stride 2 same bias = false -> batchnorm -> relu
    } -> relu
    residual shortcut = zeropad {
        conv 16 3x3 stride 2 same
    }
    globalavgpool
    aux side weight = 0.5 { dense classes }
    dense classes -> softmax
}
"""


def test_format_graph_golden() -> None:
    assert (
        format_graph(build_graph_text(SPEC))
        == """graph Small {
  input = input[8x8x4]() : 8x8x4
  conv = conv[8 3x3 /2 same no bias](input) : 4x4x8
  batchnorm = batchnorm(conv) : 4x4x8
  relu = relu(batchnorm) : 4x4x8
  residual.shortcut = project[8 1x1 /2 +bn](input) : 4x4x8  # inserted
  residual = residual[shortcut auto](relu, residual.shortcut) : 4x4x8
  relu_1 = relu(residual) : 4x4x8
  conv_1 = conv[16 3x3 /2 same](relu_1) : 2x2x16
  residual_1.shortcut = zeropad[16 /2](relu_1) : 2x2x16  # inserted
  residual_1 = residual[shortcut zeropad](conv_1, residual_1.shortcut) : 2x2x16
  globalavgpool = globalavgpool(residual_1) : 16
  side.dense = dense[3](globalavgpool) : 3  # aux side
  dense = dense[3](globalavgpool) : 3
  softmax = softmax(dense) : 3
  return softmax
  aux side = side.dense weight 0.5
}"""
    )


def _lowered():  # type: ignore[no-untyped-def]
    return lower(load_text(SPEC))


def test_infer_shapes_does_not_mutate_its_argument() -> None:
    graph = _lowered()
    inferred = infer_shapes(graph)
    assert all(graph.node(n).shape is None for n in graph.order())
    assert inferred.node("conv").shape == (4, 4, 8)


def test_passes_are_idempotent() -> None:
    once = run_pipeline(_lowered())
    twice = insert_projections(infer_shapes(once))
    assert format_graph(twice) == format_graph(once)


def test_every_residual_adds_equal_shapes_after_the_pipeline() -> None:
    graph = run_pipeline(_lowered())
    for _, node in graph.items():
        if node.op.name == "residual":
            body, shortcut = (graph.node(i).shape for i in node.inputs)
            assert body == shortcut


def test_projection_that_cannot_fit_is_a_shape_error() -> None:
    text = "network N {\n input 8x8x4\n residual {\n conv 4 3x3 padding 2\n }\n}"
    with pytest.raises(
        ArchShapeError,
        match="a 1x1 projection cannot turn the shortcut's 8x8x4 into the body's 10x10x4",
    ):
        build_graph_text(text)


def test_verify_catches_broken_invariants() -> None:
    graph = run_pipeline(_lowered())
    verify(graph, shapes=True, residuals=True)
    broken = graph.copy()
    broken.add("orphan", Node(Relu(), ("missing",), graph.node("conv").span))
    with pytest.raises(AssertionError, match="is not a node"):
        verify(broken)
    wrong_arity = graph.copy()
    node = wrong_arity.node("dense")
    wrong_arity.replace("dense", dataclasses.replace(node, inputs=()))
    with pytest.raises(AssertionError, match="takes 1 inputs, has 0"):
        verify(wrong_arity)
    aux_leak = graph.copy()
    aux_leak.replace("dense", dataclasses.replace(graph.node("dense"), inputs=("side.dense",)))
    with pytest.raises(AssertionError, match="uses aux node"):
        verify(aux_leak)


def test_copy_shares_nothing_mutable() -> None:
    graph = run_pipeline(_lowered())
    other = graph.copy()
    other.add("extra", Node(Dense(2), ("softmax",), graph.node("dense").span))
    assert "extra" not in graph and "extra" in other
    assert graph.users("softmax") == [] and other.users("softmax") == ["extra"]

"""Properties over generated networks and specs (hypothesis; profile from `HYPOTHESIS_PROFILE`).

- the shapes the front end predicts are what JAX computes (`jax.eval_shape`, stax's
  `_CheckShapeAgreement`), and the parameter count is the size of `init`'s tree;
- every pass is idempotent, and after the pipeline every residual adds equal shapes;
- `fmt` round-trips and is idempotent;
- a broken or random spec makes `archdsl check` exit 1 with a positioned diagnostic,
  never a traceback, and the API raise nothing but `ArchError`.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from archdsl.backend.model import compile_graph
from archdsl.cli import main
from archdsl.errors import ArchError
from archdsl.frontend import build_graph_text
from archdsl.graph import ops
from archdsl.graph.ir import Graph
from archdsl.graph.passes import infer_shapes, insert_projections
from archdsl.graph.report import build_report
from archdsl.lang.grammar import keywords
from archdsl.lang.parser import parse
from archdsl.testing import Network, broken_spec_texts, networks
from archdsl.tools.fmt import format_text

POSITIONED = re.compile(r"^[^\n]+:\d+:\d+: error: ")

# Small networks: JAX traces every layer of every example.
SMALL = {"max_depth": 2, "max_length": 3, "max_side": 12, "max_channels": 8}


def snapshot(graph: Graph) -> tuple[object, ...]:
    """What makes two graphs equal: nodes (spans aside), outputs, aux heads, checks."""
    return (list(graph.items()), graph.outputs, sorted(graph.aux.items()), list(graph.checks))


@given(networks(**SMALL))
def test_predicted_shapes_equal_jax_eval_shape(network: Network) -> None:
    graph = network.graph()
    model = compile_graph(graph)
    params, state = jax.eval_shape(model.init, jax.random.key(0))
    x = jax.ShapeDtypeStruct((2, *network.input_shape), jnp.float32)
    out, _ = jax.eval_shape(
        lambda p, s, x: model.apply(p, s, x, intermediates=True), params, state, x
    )
    for name, node in graph.items():
        if node.aux is None or name in out:
            assert out[name].shape == (2, *node.shape), name
    assert model.output_shape == network.output_shape


@given(networks(**SMALL))
def test_param_count_is_the_size_of_init(network: Network) -> None:
    graph = network.graph()
    params, _ = jax.eval_shape(compile_graph(graph).init, jax.random.key(0))
    leaves = sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params))
    assert leaves == build_report(graph).params == network.params
    expected = sum(
        math.prod(shape)
        for _, node in graph.items()
        for shape in node.op.param_shapes(*(graph.node(i).shape for i in node.inputs)).values()
    )
    assert leaves == expected


@given(networks())
def test_passes_are_idempotent(network: Network) -> None:
    graph = network.graph()
    for step in (infer_shapes, insert_projections):
        once = step(graph)
        assert snapshot(step(once)) == snapshot(once), step.__name__
        assert snapshot(once) == snapshot(graph), step.__name__


@given(networks())
def test_after_the_pipeline_residuals_add_equal_shapes(network: Network) -> None:
    graph = network.graph()
    for _, node in graph.items():
        if isinstance(node.op, ops.Residual | ops.Add):
            shapes = {graph.node(i).shape for i in node.inputs}
            assert len(shapes) == 1


@given(networks())
def test_fmt_round_trips_and_is_idempotent(network: Network) -> None:
    out = format_text(network.text)
    assert parse(out) == network.spec
    assert format_text(out) == out


# Broken and random specs through the CLI --------------------------------------------------------


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("props") / "spec.arch"


def run_check(path: Path, text: str) -> tuple[int, str]:
    path.write_text(text, encoding="utf-8")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["check", str(path)])
    return code, err.getvalue()


@given(broken_spec_texts())
def test_broken_spec_exits_1_with_a_positioned_diagnostic(spec_file: Path, text: str) -> None:
    code, err = run_check(spec_file, text)
    assert code == 1
    assert POSITIONED.match(err), err
    assert "Traceback" not in err


TOKENS = [
    *keywords(),
    "N",
    "c",
    "conv",
    "dense",
    "relu",
    "input",
    "maxpool",
    "flatten",
    "same",
    "shortcut",
    "weight",
    "true",
    "0",
    "1",
    "3",
    "3x3",
    "28x28x3",
    "0.5",
    "99999999999",
    '"a.arch"',
    "(",
    ")",
    "{",
    "}",
    ",",
    "=",
    "->",
    ":",
    "..",
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "\n",
    "\n",
    "\n",
    "#c\n",
    "\\\n",
    "@",
    "é",
]


@given(st.lists(st.sampled_from(TOKENS), max_size=40).map(" ".join) | st.text(max_size=60))
def test_random_text_never_crashes_check(spec_file: Path, text: str) -> None:
    code, err = run_check(spec_file, text)
    assert code in (0, 1)
    assert "Traceback" not in err
    if code == 1:
        assert POSITIONED.match(err), err


@given(st.lists(st.sampled_from(TOKENS), max_size=40).map(" ".join))
def test_api_raises_only_arch_errors(text: str) -> None:
    try:
        build_graph_text(text, "random.arch")
    except ArchError as error:
        assert POSITIONED.match(str(error)), str(error)

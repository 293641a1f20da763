"""Checks for users' specs: arguments drawn from a spec's declared ranges, and the
front end checked against the backend."""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from archdsl.errors import ArchError
from archdsl.frontend import build_graph
from archdsl.graph.ir import Graph
from archdsl.graph.lower import select_network
from archdsl.graph.report import build_report
from archdsl.graph.shapes import format_shape
from archdsl.lang import syntax as s
from archdsl.lang.loader import load_file
from archdsl.lang.values import Value, evaluate

# Users' specs ------------------------------------------------------------------------------------


def _network_def(path: str | Path, network: str | None) -> s.NetworkDef:
    return select_network(load_file(path), network)


def spec_params(
    path: str | Path, *, network: str | None = None
) -> st.SearchStrategy[dict[str, Value]]:
    """Network arguments drawn from the ranges a spec declares (`size = 224 in 32..512`).

    Requires the hypothesis package.

    Parameters without a range keep their default (they are left out of the dict).
    A range may use the parameters before it (`width = 64 in 8..size`). Integer
    ranges shrink toward the low end, so a failure is reported at its smallest value.

    Args:
        path: the `.arch` file.
        network: which network (default: the file's last).

    Raises:
        ArchError: the file does not load, or a range is not two numbers.
    """
    definition = _network_def(path, network)
    return params_strategy(definition)


def params_strategy(definition: s.NetworkDef) -> st.SearchStrategy[dict[str, Value]]:
    """`spec_params` for a network already loaded (`archdsl fuzz` has it in hand)."""
    from archdsl.errors import ArchValueError

    ranged = [p for p in definition.params if p.low is not None and p.high is not None]
    for param in definition.params:
        if param.default is None and param in ranged:
            continue
        if param.default is None:
            raise ArchValueError(
                f"`{param.name.text}` has no default and no range to draw from",
                param.span,
                help=f"declare one: `{param.name.text} = 1 in 1..10`",
            )

    @st.composite
    def draw_params(draw: Any) -> dict[str, Value]:
        env: dict[str, Value] = {}
        drawn: dict[str, Value] = {}
        for param in definition.params:
            if param.low is None or param.high is None:
                assert param.default is not None
                env[param.name.text] = evaluate(param.default, env)
                continue
            low, high = evaluate(param.low, env), evaluate(param.high, env)
            value = draw(_between(low, high, param))
            env[param.name.text] = drawn[param.name.text] = value
        return drawn

    return draw_params()


def _between(low: Value, high: Value, param: s.Param) -> st.SearchStrategy[Value]:
    from archdsl.errors import ArchValueError

    numbers = (int, float)
    if (
        isinstance(low, bool)
        or isinstance(high, bool)
        or not isinstance(low, numbers)
        or not isinstance(high, numbers)
    ):
        raise ArchValueError(
            f"the range of `{param.name.text}` must be two numbers, got {low!r}..{high!r}",
            param.span,
        )
    if low > high:
        raise ArchValueError(
            f"the range of `{param.name.text}` is empty: {low}..{high}", param.span
        )
    if isinstance(low, int) and isinstance(high, int):
        return st.integers(low, high)
    return st.floats(float(low), float(high), allow_nan=False)


def given_spec_params(
    path: str | Path, *, network: str | None = None, argname: str = "params"
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """`@given` for a test that takes network arguments drawn from a spec's ranges.

    Requires the hypothesis package.

    ::

        @given_spec_params("specs/mynet.arch")
        def test_mynet(params):
            check_spec("specs/mynet.arch", **params)

    Args:
        path: the `.arch` file.
        network: which network (default: the file's last).
        argname: the test's argument that receives the dict.
    """
    return given(**{argname: spec_params(path, network=network)})


def backend_available() -> bool:
    """Whether JAX, which the backend needs, is installed."""
    return importlib.util.find_spec("jax") is not None


def check_spec(
    path: str | Path,
    *,
    network: str | None = None,
    backend: bool = False,
    batch: int = 2,
    **arguments: Value,
) -> Graph:
    """Check a spec for one set of arguments: front end, then (optionally) the backend.

    The front end parses, lowers and infers every shape; with the backend, the
    compiled model is traced with `jax.eval_shape` (no arrays allocated) and its
    output shape and parameter count must equal what the front end predicted.

    Args:
        path: the `.arch` file.
        network: which network (default: the file's last).
        backend: also trace the compiled model (needs `archdsl.compiler`; JAX
            tracing takes a fraction of a second per instance).
        batch: the batch size of the traced input.
        **arguments: network arguments, as `--arg NAME=VALUE`.

    Returns:
        The checked graph.

    Raises:
        ArchError: the spec is wrong for these arguments (the diagnostic says where).
        AssertionError: the backend disagrees with the front end (a compiler bug).
        RuntimeError: `backend=True` but the backend is not installed.
    """
    __tracebackhide__ = True  # pytest shows the user's test and the diagnostic, not ours
    try:
        graph = build_graph(path, network=network, **arguments)
    except ArchError as error:
        raise error.with_traceback(None) from None
    if backend:
        if not backend_available():
            raise RuntimeError("the JAX backend is not available: JAX is not installed")
        check_backend(path, graph, batch=batch)
    return graph


def check_backend(
    path: str | Path,
    graph: Graph,
    *,
    batch: int = 2,
) -> None:
    """Trace `graph` compiled with `jax.eval_shape`; compare shapes and parameter counts.

    `path` only names the spec in the message: the graph the caller has is the one compiled.

    Raises:
        AssertionError: the backend's output shape or parameter count differs from the
            front end's.
    """
    import jax
    import jax.numpy as jnp

    from archdsl.backend.model import compile_graph, param_count

    model = compile_graph(graph)
    predicted = graph.node(graph.output).shape
    input_shape = graph.node(graph.inputs[0]).shape
    assert predicted is not None and input_shape is not None
    params, state = jax.eval_shape(model.init, jax.random.key(0))
    x = jax.ShapeDtypeStruct((batch, *input_shape), jnp.float32)
    out, _ = jax.eval_shape(functools.partial(model.apply, train=False), params, state, x)
    problems = []
    if tuple(out.shape) != (batch, *predicted):
        problems.append(
            f"the model outputs {format_shape(tuple(out.shape)[1:])} per example "
            f"(batch {out.shape[0]}), the front end predicts "
            f"{format_shape(predicted)}"
        )
    if tuple(model.output_shape) != tuple(predicted):
        problems.append(
            f"model.output_shape is {format_shape(model.output_shape)}, the front end "
            f"predicts {format_shape(predicted)}"
        )
    count = param_count(params)
    expected = build_report(graph).params
    if count != expected:
        problems.append(f"init makes {count:,} parameters, the front end counts {expected:,}")
    if problems:
        raise AssertionError(f"{path}: backend and front end disagree: " + "; ".join(problems))

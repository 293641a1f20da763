"""Compile an `ir.Graph` to jitted JAX functions: the lowered layers, run in graph order.

`compile_graph` lowers every node (`lowerings.lower_node`: one `Layer` per op, looked up
by op class) and strings the layers together as stax's `serial` does, but over a DAG and
with parameters named by node. `CompiledModel` holds the jitted `init` and `apply`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from archdsl.backend.layer import (
    LOWERINGS,
    Layer,
    Leaves,
    Lowering,
    Mode,
    Params,
    State,
    conv_kernel_init,
    dense_kernel_init,
    lowers,
)
from archdsl.backend.lowerings import lower_node
from archdsl.errors import ArchValueError
from archdsl.graph.ir import Graph
from archdsl.graph.shapes import Shape, format_shape

__all__ = [
    "LOWERINGS",
    "CompiledModel",
    "Layer",
    "Leaves",
    "Lowering",
    "Mode",
    "Params",
    "State",
    "compile_graph",
    "conv_kernel_init",
    "dense_kernel_init",
    "lower_node",
    "lowers",
    "param_count",
]


def _cast(tree: Any, dtype: jnp.dtype) -> Any:
    return jax.tree.map(lambda a: a.astype(dtype), tree)


@dataclass(frozen=True)
class CompiledModel:
    """A network lowered to JAX: jitted `init` and `apply`, and what it was built from.

    `init(key) -> (params, state)`. `apply(params, state, x, train=False, key=None,
    intermediates=False) -> (out, state)` takes a batch `(N, *input_shape)`:
    at inference `out` is the main output; with `train=True` it is
    `{"output": main, "<aux name>": aux, ...}`; with `intermediates=True` it is every
    node's output by name. Outputs are float32 whatever the compute `dtype`.
    """

    graph: Graph
    init: Callable[[jax.Array], tuple[Params, State]]
    apply: Callable[..., tuple[Any, State]]
    input_shape: Shape
    output_shape: Shape
    dtype: str = "float32"

    def trainable(self, params: Params) -> dict[str, dict[str, bool]]:
        """A pytree like `params` of bools: False under frozen nodes (for `optax.masked`)."""
        return {
            name: {leaf: not self.graph.node(name).frozen for leaf in leaves}
            for name, leaves in params.items()
        }


_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def compile_graph(graph: Graph, *, dtype: str = "float32") -> CompiledModel:
    """Lower a fully checked graph (shapes set, projections inserted) to JAX.

    Args:
        graph: the front end's output.
        dtype: the compute dtype: `"float32"`, or `"bfloat16"` to run in bf16 while
            parameters and batch-norm statistics stay float32.

    Returns:
        The `CompiledModel`; nothing is traced until `init` or `apply` is called.
    """
    if dtype not in _DTYPES:
        raise ArchValueError(
            f"unknown dtype `{dtype}`; expected one of {', '.join(map(repr, _DTYPES))}"
        )
    compute = _DTYPES[dtype]
    order = graph.order()
    index = {name: i for i, name in enumerate(order)}
    layers = {name: lower_node(graph, name) for name in order}
    (input_name,) = graph.inputs
    input_shape = graph.node(input_name).shape
    assert input_shape is not None
    main = graph.ancestors(graph.output) | {graph.output}
    infer_order = [name for name in order if name in main]
    param_nodes = {
        name
        for name, node in graph.items()
        if node.op.param_shapes(*(graph.node(i).shape for i in node.inputs))
    }

    def init(key: jax.Array) -> tuple[Params, State]:
        params: Params = {}
        state: State = {}
        for name in order:
            leaves = layers[name].init(jax.random.fold_in(key, index[name]))
            if leaves:
                params[name] = leaves
            running = layers[name].state()
            if running:
                state[name] = running
        return params, state

    def apply(
        params: Params,
        state: State,
        x: jax.Array,
        train: bool = False,
        key: jax.Array | None = None,
        intermediates: bool = False,
    ) -> tuple[Any, State]:
        if tuple(x.shape[1:]) != input_shape or x.ndim != len(input_shape) + 1:
            raise ArchValueError(
                f"`{graph.name or 'network'}` takes a batch of shape "
                f"(N, {', '.join(map(str, input_shape))}), got {tuple(x.shape)}",
                help=f"each example is {format_shape(input_shape)} (NHWC, batch first)",
            )
        names = order if train or intermediates else infer_order
        missing = [n for n in names if n in param_nodes and n not in params]
        if missing:
            raise ArchValueError(
                f"no parameters for {len(missing)} node(s): "
                + ", ".join(f"`{n}`" for n in missing[:5])
                + (", ..." if len(missing) > 5 else ""),
                help="build them with `model.init(key)`, or load and `check_weights` them",
            )
        if train and key is None and any(layers[n].needs_key for n in names):
            raise ValueError(
                "`dropout` needs a PRNG key when training: "
                "apply(params, state, x, train=True, key=jax.random.key(0))"
            )
        env: dict[str, jax.Array] = {}
        new_state = dict(state)
        for name in names:
            node = graph.node(name)
            layer = layers[name]
            leaves = params.get(name, {})
            if compute != jnp.float32:
                leaves = _cast(leaves, compute)
            if node.frozen:
                leaves = lax.stop_gradient(leaves)
            xs = (x.astype(compute),) if not node.inputs else tuple(env[i] for i in node.inputs)
            node_key = (
                jax.random.fold_in(key, index[name])
                if train and layer.needs_key and key is not None
                else None
            )
            mode = Mode(train=train, frozen=node.frozen, key=node_key)
            out, running = layer.apply(leaves, state.get(name, {}), xs, mode)
            if running:
                new_state[name] = running
            env[name] = out
        if intermediates:
            result: Any = env
        elif train:
            result = {"output": env[graph.output]}
            result.update({aux: env[head.output] for aux, head in graph.aux.items()})
        else:
            result = env[graph.output]
        return _cast(result, jnp.float32), new_state

    output_shape = graph.node(graph.output).shape
    assert output_shape is not None
    return CompiledModel(
        graph=graph,
        init=jax.jit(init),
        apply=jax.jit(apply, static_argnames=("train", "intermediates")),
        input_shape=input_shape,
        output_shape=output_shape,
        dtype=dtype,
    )


def param_count(params: Params) -> int:
    """The number of scalars in a params (or state) tree, arrays or `ShapeDtypeStruct`s."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))

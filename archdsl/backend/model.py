"""Compile an `ir.Graph` to jitted JAX functions: the lowered layers, run in graph order.

`compile_graph` lowers every node (`lowerings.lower_node`: one `Layer` per op, looked up
by op class) and strings the layers together as stax's `serial` does, but over a DAG and
with parameters named by node. `CompiledModel` holds the jitted `init` and `apply`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from archdsl.backend import draws, loopconv, packing
from archdsl.backend.layer import (
    LOWERINGS,
    Initialiser,
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
from archdsl.graph.repeats import EXTERNAL, Run, find_runs
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

    Params and state are per layer (`params["layer3.5.conv1"]`). `apply` also takes
    them packed (`pack`, or `init(key, packed=True)`): runs of identical blocks
    stacked, which is what a training step should carry to compile fast (see
    `backend.packing`). Packed params run each run as one `lax.scan`; per-layer ones
    run every node. `apply` returns state in the form it was given.
    """

    graph: Graph
    init: Callable[..., tuple[Params, State]]
    apply: Callable[..., tuple[Any, State]]
    input_shape: Shape
    output_shape: Shape
    dtype: str = "float32"
    runs: tuple[Run, ...] = ()
    """The runs `apply` loops with `lax.scan` given packed params (none with `scan=False`)."""

    def pack(self, tree: dict[str, Any]) -> dict[str, Any]:
        """Params or state (or a like tree) with each run stacked; packed trees pass."""
        if packing.is_packed(tree, self.runs):
            return tree
        # Jitted: one compiled copy, not a dispatch (and a compile) per array.
        return jax.jit(packing.pack, static_argnums=1)(tree, self.runs)

    def unpack(self, tree: dict[str, Any]) -> dict[str, Any]:
        """The per-layer form of a packed tree."""
        if not self.runs:
            return tree
        return jax.jit(packing.unpack, static_argnums=1)(tree, self.runs)

    def trainable(self, params: Params) -> dict[str, Any]:
        """A pytree like `params` (either form) of bools: False under frozen nodes."""
        runs = {packing.run_key(run): run for run in self.runs}
        out: dict[str, Any] = {}
        for name, leaves in params.items():
            run = runs.get(name)
            if run is None:
                out[name] = {leaf: not self.graph.node(name).frozen for leaf in leaves}
            else:
                out[name] = {
                    rel: {leaf: not self.graph.node(run.node(0, rel)).frozen for leaf in sub}
                    for rel, sub in leaves.items()
                }
        return out


MIN_SCANNED = 3
"""The fewest instances a run needs to be looped. XLA spends more compiling a loop (its
forward and backward bodies) than two unrolled blocks: ResNet-152's training step
compiled in 15.7 CPU seconds with its two 2-block runs looped, 12.3 with them unrolled."""

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def compile_graph(graph: Graph, *, dtype: str = "float32", scan: bool = True) -> CompiledModel:
    """Lower a fully checked graph (shapes set, projections inserted) to JAX.

    Args:
        graph: the front end's output.
        dtype: the compute dtype: `"float32"`, or `"bfloat16"` to run in bf16 while
            parameters and batch-norm statistics stay float32.
        scan: loop each run of identical chained blocks (`graph.repeats.find_runs`,
            at least `MIN_SCANNED` of them) with `jax.lax.scan` over stacked
            parameters, so XLA compiles the block once (the default); False unrolls
            every node. Same parameter names, same results to float rounding. The
            loops run when `apply` is given packed params (`init(key, packed=True)` or
            `pack`), as a training step carries them: ResNet-152's step then compiles
            in 35-45% of the unrolled time and runs as fast (within noise), given
            `backend.memory.keep_freed_memory()` (bench/first_step.py,
            bench/scan_step.py). Per-layer params run every node unrolled, exactly as
            with `scan=False`.

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
    param_nodes = {
        name
        for name, node in graph.items()
        if node.op.param_shapes(*(graph.node(i).shape for i in node.inputs))
    }
    runs = tuple(r for r in find_runs(graph) if len(r.instances) >= MIN_SCANNED) if scan else ()
    plan = _plan(order, runs)

    def init(key: jax.Array, packed: bool = False) -> tuple[Params, State]:
        # Each node's key is `fold_in(key, its index)`, drawn for all nodes in one
        # vectorised call; every kernel is then drawn in one call per initialiser
        # (`draws`): a few samplers to compile instead of one per distinct shape.
        node_keys = _fold_in_many(key, range(len(order)))
        # (where in the packed tree, the nodes initialised alike): a run's body node
        # across its instances, stacked; any other node alone.
        groups: list[tuple[tuple[str, str | None], list[str]]] = []
        for step in plan:
            if isinstance(step, Run):
                for rel, _ in step.body:
                    names = [step.node(i, rel) for i in range(len(step.instances))]
                    groups.append(((packing.run_key(step), rel), names))
            else:
                groups.append(((step, None), [step]))
        requests = {}
        for g, (_, names) in enumerate(groups):
            init_fn = layers[names[0]].init
            if isinstance(init_fn, Initialiser):
                request = init_fn.kernel_request(tuple(index[n] for n in names))
                if request is not None:
                    requests[g] = request
        drawn = draws.draw_all(node_keys, list(requests.values()))
        kernels = dict(zip(requests, drawn, strict=True))
        params: Params = {}
        state: State = {}
        for g, ((top, rel), names) in enumerate(groups):
            layer = layers[names[0]]
            if g in kernels:
                assert isinstance(layer.init, Initialiser)
                leaves = jax.vmap(layer.init.build)(kernels[g])
            else:
                # One traced init vmapped over the nodes' keys: the same values as
                # initialising each node alone.
                leaves = jax.vmap(layer.init)(node_keys[np.array([index[n] for n in names])])
            running = layer.state()
            running = {k: jnp.broadcast_to(v, (len(names), *v.shape)) for k, v in running.items()}
            for tree, value in ((params, leaves), (state, running)):
                if not value:
                    continue
                if rel is None:
                    tree[top] = {k: v[0] for k, v in value.items()}
                else:
                    tree.setdefault(top, {})[rel] = value
        if packed:
            return params, state
        return packing.unpack(params, runs), packing.unpack(state, runs)

    def run_node(
        name: str,
        leaves: Leaves,
        running: Leaves,
        xs: tuple[jax.Array, ...],
        train: bool,
        node_key: jax.Array | None,
    ) -> tuple[jax.Array, Leaves]:
        node = graph.node(name)
        if compute != jnp.float32:
            leaves = _cast(leaves, compute)
        if node.frozen:
            leaves = lax.stop_gradient(leaves)
        mode = Mode(train=train, frozen=node.frozen, key=node_key)
        return layers[name].apply(leaves, running, xs, mode)

    def node_key(name: str, train: bool, key: jax.Array | None) -> jax.Array | None:
        if train and layers[name].needs_key and key is not None:
            return jax.random.fold_in(key, index[name])
        return None

    def run_scan(
        run: Run,
        params: Params,
        state: State,
        x: jax.Array,
        train: bool,
        key: jax.Array | None,
    ) -> tuple[jax.Array, dict[str, Leaves]]:
        count = len(run.instances)
        group = packing.run_key(run)
        keyed = [rel for rel, _ in run.body if node_key(run.node(0, rel), train, key) is not None]
        xs = {
            "params": params.get(group, {}),
            "state": state.get(group, {}),
            "keys": {
                rel: _fold_in_many(key, [index[run.node(i, rel)] for i in range(count)])
                for rel in keyed
            },
        }
        first = run.instances[0]

        def body(carry: jax.Array, slices: dict[str, Any]) -> tuple[jax.Array, State]:
            env = {EXTERNAL: carry}
            updates: State = {}
            # Training is what differentiates the body: canonical gradient convolutions
            # then (see loopconv); at inference plain ones, so `jax.jvp` still works.
            with loopconv.inside_loop() if train else contextlib.nullcontext():
                for rel, inputs in run.body:
                    out, running = run_node(
                        f"{first}.{rel}",
                        slices["params"].get(rel, {}),
                        slices["state"].get(rel, {}),
                        tuple(env[i] for i in inputs),
                        train,
                        slices["keys"].get(rel),
                    )
                    if running:
                        updates[rel] = running
                    env[rel] = out
            return env[run.output], updates

        # `length`: a run of parameter-free, stateless blocks has nothing to scan over.
        return lax.scan(body, x, xs, length=count)

    place = {
        run.node(i, rel): (run, rel)
        for run in runs
        for i in range(len(run.instances))
        for rel, _ in run.body
    }

    def missing_params(params: Params, names: list[str]) -> list[str]:
        """Nodes with parameters that `params` (either form) lacks."""
        missing = []
        for name in names:
            if name not in param_nodes or name in params:
                continue
            if name in place:
                run, rel = place[name]
                if rel in params.get(packing.run_key(run), {}):
                    continue
            missing.append(name)
        return missing

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
        names = order if train or intermediates else [n for n in order if n in main]
        missing = missing_params(params, names)
        if missing:
            raise ArchValueError(
                f"no parameters for {len(missing)} node(s): "
                + ", ".join(f"`{n}`" for n in missing[:5])
                + (", ..." if len(missing) > 5 else ""),
                help="build them with `model.init(key)`, or load and `check_weights` them",
            )
        random = sorted({graph.node(n).op.name for n in names if layers[n].needs_key})
        if train and key is None and random:
            raise ValueError(
                f"{' and '.join(f'`{r}`' for r in random)} "
                f"need{'s' if len(random) == 1 else ''} a PRNG key when training: "
                "apply(params, state, x, train=True, key=jax.random.key(0))"
            )
        state_packed = packing.is_packed(state, runs)
        # The loops run on packed params, what a training step carries. Per-layer params
        # run every node, as `scan=False` does: stacking them inside each call cost more
        # than the loop saved (ResNet-101: +19% per step, compile 1.6x). Every node's
        # output is wanted with `intermediates`: no loops then either.
        looped = bool(runs) and not intermediates and packing.is_packed(params, runs)
        steps: list[str | Run] = plan if looped else list(order)
        if looped:
            state = packing.pack(state, runs)
        else:
            params, state = packing.unpack(params, runs), packing.unpack(state, runs)
        wanted = set(names)
        env: dict[str, jax.Array] = {}
        new_state = dict(state)
        for step in steps:
            if isinstance(step, Run):
                if step.last in wanted:
                    env[step.last], updates = run_scan(
                        step, params, state, env[step.input], train, key
                    )
                    if updates:
                        new_state[packing.run_key(step)] = updates
                continue
            if step not in wanted:
                continue
            node = graph.node(step)
            xs = (x.astype(compute),) if not node.inputs else tuple(env[i] for i in node.inputs)
            out, running = run_node(
                step,
                params.get(step, {}),
                state.get(step, {}),
                xs,
                train,
                node_key(step, train, key),
            )
            if running:
                new_state[step] = running
            env[step] = out
        if intermediates:
            result: Any = env
        elif train:
            result = {"output": env[graph.output]}
            result.update({aux: env[head.output] for aux, head in graph.aux.items()})
        else:
            result = env[graph.output]
        # State goes back in the form it came in.
        if state_packed and not looped:
            new_state = packing.pack(new_state, runs)
        elif looped and not state_packed:
            new_state = packing.unpack(new_state, runs)
        return _cast(result, jnp.float32), new_state

    output_shape = graph.node(graph.output).shape
    assert output_shape is not None
    return CompiledModel(
        graph=graph,
        init=jax.jit(init, static_argnames=("packed",)),
        apply=jax.jit(apply, static_argnames=("train", "intermediates")),
        input_shape=input_shape,
        output_shape=output_shape,
        dtype=dtype,
        runs=runs,
    )


def _fold_in_many(key: jax.Array, indices: Any) -> jax.Array:
    """`jnp.stack([jax.random.fold_in(key, i) for i in indices])`, as one vectorised call."""
    data = jnp.asarray(list(indices), dtype=jnp.uint32)
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, data)


def _plan(order: list[str], runs: tuple[Run, ...]) -> list[str | Run]:
    """Graph order with each run's nodes replaced by the run, where its first node was."""
    owner = {name: run for run in runs for name in run.nodes}
    plan: list[str | Run] = []
    placed: set[int] = set()
    for name in order:
        run = owner.get(name)
        if run is None:
            plan.append(name)
        elif id(run) not in placed:
            placed.add(id(run))
            plan.append(run)
    return plan


def param_count(params: Params) -> int:
    """The number of scalars in a params (or state) tree, arrays or `ShapeDtypeStruct`s."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))

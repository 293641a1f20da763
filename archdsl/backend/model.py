"""Lower an `ir.Graph` to jitted JAX functions: one `Layer` per op, run in graph order.

Each entry of `LOWERINGS` (keyed like `ops.OPS`) turns an op, the shapes of its
inputs and its output shape (all from the IR: the backend never re-derives a shape)
into a `Layer`: an `init` that builds exactly `op.param_shapes(...)`, an optional
`state` that builds `op.state_shapes(...)`, and an `apply` written with `jax.lax`
and `jax.nn`. `compile_graph` strings the layers together as stax's `serial` does,
but over a DAG and with parameters named by node.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from archdsl.backend import packing
from archdsl.errors import ArchValueError
from archdsl.graph import ops
from archdsl.graph.ir import Graph
from archdsl.graph.repeats import EXTERNAL, Run, find_runs
from archdsl.graph.shapes import Shape, format_shape, resolve_padding

Leaves: TypeAlias = dict[str, jax.Array]
"""One node's tensors by leaf name: `{"kernel": ..., "bias": ...}`."""
Params: TypeAlias = dict[str, Leaves]
"""Learned tensors by node name, then leaf: `params["layer2.0.conv1"]["kernel"]`."""
State: TypeAlias = dict[str, Leaves]
"""Batch-norm running statistics by node name, then leaf (`mean`, `var`)."""


class Mode(NamedTuple):
    """How one node runs in one call; `train` and `frozen` are fixed at trace time."""

    train: bool
    """Dropout drops; batch norm uses (and updates) batch statistics."""
    frozen: bool
    """The node's batch norm stays in inference mode even when training."""
    key: jax.Array | None
    """This node's dropout key; None unless training a `dropout` node."""


Apply: TypeAlias = Callable[[Leaves, Leaves, tuple[jax.Array, ...], Mode], tuple[jax.Array, Leaves]]


def _no_state() -> Leaves:
    return {}


class Layer(NamedTuple):
    """A lowered node, as stax's (init_fun, apply_fun) pair plus running state.

    `init(key)` returns the node's parameters; `state()` its initial running
    statistics; `apply(params, state, inputs, mode)` its batched output and new state.
    """

    init: Callable[[jax.Array], Leaves]
    apply: Apply
    state: Callable[[], Leaves] = _no_state
    needs_key: bool = False
    """Whether `apply` needs `mode.key` when training (dropout)."""


Lowering: TypeAlias = Callable[[Any, tuple[Shape, ...], Shape], Layer]
"""`(op, input shapes, output shape) -> Layer`."""

LOWERINGS: dict[str, Lowering] = {}
"""One lowering per op, keyed like `ops.OPS` by the op's spelling."""


def lowers(*names: str) -> Callable[[Lowering], Lowering]:
    """Register a lowering for the ops spelled `names`."""

    def register(fn: Lowering) -> Lowering:
        for name in names:
            LOWERINGS[name] = fn
        return fn

    return register


def conv_kernel_init(key: jax.Array, shape: Shape, dtype: Any = jnp.float32) -> jax.Array:
    """He normal with fan_out, as torchvision's ResNet and VGG initialise conv kernels.

    `kaiming_normal_(mode="fan_out", nonlinearity="relu")`: std `sqrt(2 / (kh*kw*out))`.
    """
    fan_out = math.prod(shape[:-2]) * shape[-1]
    return _flat_sample(jax.random.normal, key, shape, dtype) * math.sqrt(2.0 / fan_out)


def dense_kernel_init(key: jax.Array, shape: Shape, dtype: Any = jnp.float32) -> jax.Array:
    """Glorot normal, as Keras' `glorot_normal`: truncated to two std, variance 2/(in+out)."""
    fan_in, fan_out = math.prod(shape[:-1]), shape[-1]
    # The std of a standard normal truncated to (-2, 2), as jax.nn.initializers uses.
    std = math.sqrt(2.0 / (fan_in + fan_out)) / 0.87962566103423978
    return _flat_sample(_truncated_normal, key, shape, dtype) * std


def _truncated_normal(key: jax.Array, shape: Shape, dtype: Any) -> jax.Array:
    return jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype)


def _flat_sample(
    sample: Callable[..., jax.Array], key: jax.Array, shape: Shape, dtype: Any
) -> jax.Array:
    # Same distribution as drawing `shape` directly, but XLA on CPU compiles a flat
    # threefry several times faster than a rank-4 one (jax 0.10: ResNet-50's init
    # compiles in 9.5 s instead of 14.7 s on 2 cores).
    return sample(key, (math.prod(shape),), dtype).reshape(shape)


_LEAF_INIT: dict[str, Callable[[tuple[int, ...]], jax.Array]] = {
    "bias": lambda shape: jnp.zeros(shape, jnp.float32),
    "scale": lambda shape: jnp.ones(shape, jnp.float32),
}
_STATE_INIT: dict[str, Callable[[tuple[int, ...]], jax.Array]] = {
    "mean": lambda shape: jnp.zeros(shape, jnp.float32),
    "var": lambda shape: jnp.ones(shape, jnp.float32),
}


def _initialiser(
    op: ops.Op, inputs: tuple[Shape, ...], kernel_init: Callable[..., jax.Array] | None
) -> Callable[[jax.Array], Leaves]:
    """Build exactly the leaves `op.param_shapes` names: the op is the one authority."""
    shapes = op.param_shapes(*inputs)

    def init(key: jax.Array) -> Leaves:
        leaves: Leaves = {}
        for leaf, shape in shapes.items():
            if leaf == "kernel":
                assert kernel_init is not None, f"`{op.name}` has a kernel but no initialiser"
                leaves[leaf] = kernel_init(key, shape, jnp.float32)
            else:
                leaves[leaf] = _LEAF_INIT[leaf](shape)
        return leaves

    return init


def _state_initialiser(op: ops.Op, inputs: tuple[Shape, ...]) -> Callable[[], Leaves]:
    shapes = op.state_shapes(*inputs)
    if not shapes:
        return _no_state
    return lambda: {leaf: _STATE_INIT[leaf](shape) for leaf, shape in shapes.items()}


def _stateless(
    op: ops.Op,
    inputs: tuple[Shape, ...],
    fn: Callable[..., jax.Array],
    kernel_init: Callable[..., jax.Array] | None = None,
) -> Layer:
    """A layer whose output depends on params and inputs only: `fn(params, *xs)`."""

    def apply(
        params: Leaves, state: Leaves, xs: tuple[jax.Array, ...], mode: Mode
    ) -> tuple[jax.Array, Leaves]:
        return fn(params, *xs), state

    return Layer(_initialiser(op, inputs, kernel_init), apply)


def _channels_last(v: jax.Array, ndim: int) -> jax.Array:
    """Shape a per-channel vector to broadcast against a rank-`ndim` array explicitly."""
    return v.reshape((1,) * (ndim - 1) + (-1,))


def _add_bias(y: jax.Array, params: Leaves) -> jax.Array:
    return y + _channels_last(params["bias"], y.ndim) if "bias" in params else y


def _conv(
    x: jax.Array,
    kernel: jax.Array,
    stride: tuple[int, int],
    pads: tuple[tuple[int, int], tuple[int, int]],
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
) -> jax.Array:
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=stride,
        padding=pads,
        rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
    )


def _dense(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))


@lowers("input")
def _input(op: ops.Input, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    """The network input arrives as the only operand (`compile_graph` feeds it)."""
    return _stateless(op, inputs, lambda params, x: x)


@lowers("conv")
def _conv_layer(op: ops.Conv, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    (x_shape,) = inputs
    pads = resolve_padding(op.padding, x_shape[:2], op.kernel, op.stride, op.dilation)

    def fn(params: Leaves, x: jax.Array) -> jax.Array:
        y = _conv(x, params["kernel"], op.stride, pads, op.dilation, op.groups)
        return _add_bias(y, params)

    return _stateless(op, inputs, fn, conv_kernel_init)


def _pool_geometry(
    op: ops.MaxPool | ops.AvgPool, x_shape: Shape, output: Shape
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Per spatial axis: the pads to give `reduce_window`, and the explicit pads.

    Without ceil mode the explicit pads are used as they are and XLA's floor does the
    rest. With ceil mode the high pad is stretched (or the input cropped, where a
    window would start in the padding alone) so that exactly the predicted number of
    windows fit, as Caffe and PyTorch count them.
    """
    explicit = resolve_padding(op.padding, x_shape[:2], op.window, op.strides)
    if not op.ceil:
        return list(explicit), list(explicit)
    window_pads = []
    for size, window, stride, (lo, _), out in zip(
        x_shape[:2], op.window, op.strides, explicit, output[:2], strict=True
    ):
        window_pads.append((lo, (out - 1) * stride + window - size - lo))
    return window_pads, list(explicit)


def _reduce_pool(
    x: jax.Array,
    init: float,
    reducer: Callable[[jax.Array, jax.Array], jax.Array],
    window: tuple[int, int],
    stride: tuple[int, int],
    pads: list[tuple[int, int]],
) -> jax.Array:
    # A negative high pad means trailing input no window reads: crop it instead.
    for axis, (_, hi) in enumerate(pads, start=1):
        if hi < 0:
            x = lax.slice_in_dim(x, 0, x.shape[axis] + hi, axis=axis)
    # A Python scalar init lets JAX see the max/add monoid and use its differentiable
    # reduce_window_max/sum; an array init (even a constant) falls back to the generic,
    # non-differentiable reduce_window under jit.
    return lax.reduce_window(
        x,
        init,
        reducer,
        (1, *window, 1),
        (1, *stride, 1),
        ((0, 0), *((lo, max(hi, 0)) for lo, hi in pads), (0, 0)),
    )


@lowers("maxpool")
def _maxpool(op: ops.MaxPool, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    (x_shape,) = inputs
    pads, _ = _pool_geometry(op, x_shape, output)

    def fn(params: Leaves, x: jax.Array) -> jax.Array:
        return _reduce_pool(x, -jnp.inf, lax.max, op.window, op.strides, pads)

    return _stateless(op, inputs, fn)


def _window_counts(
    size: int, window: int, stride: int, explicit: tuple[int, int], out: int
) -> np.ndarray:
    """Cells each window averages over: input and explicit padding, not the ceil overhang.

    PyTorch's `avg_pool2d` (count_include_pad): `end = min(start + k, size + pad)`.
    """
    starts = np.arange(out) * stride - explicit[0]
    ends = np.minimum(starts + window, size + explicit[1])
    return (ends - starts).astype(np.float32)


@lowers("avgpool")
def _avgpool(op: ops.AvgPool, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    (x_shape,) = inputs
    pads, explicit = _pool_geometry(op, x_shape, output)
    rows, cols = (
        _window_counts(size, window, stride, pad, out)
        for size, window, stride, pad, out in zip(
            x_shape[:2], op.window, op.strides, explicit, output[:2], strict=True
        )
    )
    # Static per-window divisors: (1, H', W', 1), computed once at compile time.
    counts = np.outer(rows, cols)[None, :, :, None]

    def fn(params: Leaves, x: jax.Array) -> jax.Array:
        total = _reduce_pool(x, 0.0, lax.add, op.window, op.strides, pads)
        return total / jnp.asarray(counts, x.dtype)

    return _stateless(op, inputs, fn)


@lowers("globalavgpool")
def _globalavgpool(op: ops.GlobalAvgPool, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    return _stateless(op, inputs, lambda params, x: jnp.mean(x, axis=(1, 2)))


@lowers("globalmaxpool")
def _globalmaxpool(op: ops.GlobalMaxPool, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    return _stateless(op, inputs, lambda params, x: jnp.max(x, axis=(1, 2)))


@lowers("flatten")
def _flatten(op: ops.Flatten, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    # The per-example size comes from the IR, so a symbolic batch axis reshapes cleanly.
    return _stateless(op, inputs, lambda params, x: x.reshape((x.shape[0], *output)))


@lowers("dense")
def _dense_layer(op: ops.Dense, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    def fn(params: Leaves, x: jax.Array) -> jax.Array:
        return _add_bias(_dense(x, params["kernel"]), params)

    return _stateless(op, inputs, fn, dense_kernel_init)


@lowers("dropout")
def _dropout(op: ops.Dropout, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    keep = 1.0 - op.rate

    def apply(
        params: Leaves, state: Leaves, xs: tuple[jax.Array, ...], mode: Mode
    ) -> tuple[jax.Array, Leaves]:
        (x,) = xs
        if not mode.train or op.rate == 0.0:
            return x, state
        assert mode.key is not None, "compile_graph checks the key"
        mask = jax.random.bernoulli(mode.key, keep, x.shape)
        return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros((), x.dtype)), state

    return Layer(_initialiser(op, inputs, None), apply, needs_key=op.rate > 0)


def _batch_norm(
    y: jax.Array,
    params: Leaves,
    state: Leaves,
    mode: Mode,
    eps: float,
    momentum: float,
) -> tuple[jax.Array, Leaves]:
    """Normalise over all axes but the last; statistics in float32 whatever `y`'s dtype.

    Training updates the running statistics as flax does:
    `running = momentum * running + (1 - momentum) * batch` (biased variance).
    """
    y32 = y.astype(jnp.float32)
    if mode.train and not mode.frozen:
        axes = tuple(range(y.ndim - 1))
        mean = jnp.mean(y32, axis=axes)
        var = jnp.mean(jnp.square(y32 - _channels_last(mean, y.ndim)), axis=axes)
        state = {
            "mean": momentum * state["mean"] + (1.0 - momentum) * mean,
            "var": momentum * state["var"] + (1.0 - momentum) * var,
        }
    else:
        mean, var = state["mean"], state["var"]
    scale = params["scale"].astype(jnp.float32) * lax.rsqrt(var + eps)
    shift = params["bias"].astype(jnp.float32) - mean * scale
    out = y32 * _channels_last(scale, y.ndim) + _channels_last(shift, y.ndim)
    return out.astype(y.dtype), state


@lowers("batchnorm")
def _batchnorm(op: ops.BatchNorm, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    def apply(
        params: Leaves, state: Leaves, xs: tuple[jax.Array, ...], mode: Mode
    ) -> tuple[jax.Array, Leaves]:
        return _batch_norm(xs[0], params, state, mode, op.eps, op.momentum)

    return Layer(_initialiser(op, inputs, None), apply, _state_initialiser(op, inputs))


@lowers("lrn")
def _lrn(op: ops.LRN, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    """`a / (k + alpha / size * sum of a^2 over size channels) ** beta`, as PyTorch."""
    channel_pads = (op.size // 2, (op.size - 1) // 2)

    def fn(params: Leaves, x: jax.Array) -> jax.Array:
        sums = lax.reduce_window(
            jnp.square(x),
            0.0,
            lax.add,
            (1, 1, 1, op.size),
            (1, 1, 1, 1),
            ((0, 0), (0, 0), (0, 0), channel_pads),
        )
        return x / (op.k + (op.alpha / op.size) * sums) ** op.beta

    return _stateless(op, inputs, fn)


_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "softmax": lambda x: jax.nn.softmax(x, axis=-1),
    "log_softmax": lambda x: jax.nn.log_softmax(x, axis=-1),
    # Exact erf form, as PyTorch's and Keras' default.
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "silu": jax.nn.silu,
    "elu": jax.nn.elu,
    "identity": lambda x: x,
}


@lowers(*_ACTIVATIONS)
def _activation(op: ops.Activation, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    fn = _ACTIVATIONS[op.name]
    return _stateless(op, inputs, lambda params, x: fn(x))


@lowers("leaky_relu")
def _leaky_relu(op: ops.LeakyRelu, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    return _stateless(op, inputs, lambda params, x: jax.nn.leaky_relu(x, negative_slope=op.slope))


@lowers("add", "residual")
def _add(op: ops.Add | ops.Residual, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    """Elementwise sum; a residual is `body + shortcut` (its activation is a later node)."""

    def fn(params: Leaves, *xs: jax.Array) -> jax.Array:
        total = xs[0]
        for x in xs[1:]:
            total = total + x
        return total

    return _stateless(op, inputs, fn)


@lowers("concat")
def _concat(op: ops.Concat, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    return _stateless(op, inputs, lambda params, *xs: jnp.concatenate(xs, axis=-1))


_PROJECT_BN = ops.BatchNorm()
"""`project` has no batch-norm attributes of its own: it uses `batchnorm`'s defaults."""


@lowers("project")
def _project(op: ops.Project, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    """The Ws shortcut: 1x1 conv with stride (dense on rank 1), then batch norm or bias."""
    (x_shape,) = inputs
    rank1 = len(x_shape) == 1

    def apply(
        params: Leaves, state: Leaves, xs: tuple[jax.Array, ...], mode: Mode
    ) -> tuple[jax.Array, Leaves]:
        (x,) = xs
        if rank1:
            y = _dense(x, params["kernel"])
        else:
            y = _conv(x, params["kernel"], op.stride, ((0, 0), (0, 0)))
        if not op.batchnorm:
            return _add_bias(y, params), state
        return _batch_norm(y, params, state, mode, _PROJECT_BN.eps, _PROJECT_BN.momentum)

    kernel_init = dense_kernel_init if rank1 else conv_kernel_init
    return Layer(_initialiser(op, inputs, kernel_init), apply, _state_initialiser(op, inputs))


@lowers("zeropad")
def _zeropad(op: ops.ZeroPad, inputs: tuple[Shape, ...], output: Shape) -> Layer:
    """The parameter-free shortcut: `x[:, ::s, ::s, :]`, zero channels appended at the end."""
    (x_shape,) = inputs
    extra = output[-1] - x_shape[-1]
    assert extra >= 0, f"`zeropad` cannot narrow {x_shape[-1]} channels to {output[-1]}"

    def fn(params: Leaves, x: jax.Array) -> jax.Array:
        if x.ndim == 4:
            x = x[:, :: op.stride[0], :: op.stride[1], :]
        return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, extra)])

    return _stateless(op, inputs, fn)


def lower_node(graph: Graph, name: str) -> Layer:
    """The `Layer` for one node, from its op and the shapes the front end set."""
    node = graph.node(name)
    assert node.shape is not None, f"{name}: no shape; run `infer_shapes` first"
    in_shapes = tuple(graph.node(i).shape for i in node.inputs)
    assert all(s is not None for s in in_shapes), f"{name}: an input has no shape"
    lowering = LOWERINGS.get(node.op.name)
    assert lowering is not None, f"no JAX lowering for `{node.op.name}`"
    return lowering(node.op, in_shapes, node.shape)  # type: ignore[arg-type]


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
    `backend.packing`); it returns state in the form it was given.
    """

    graph: Graph
    init: Callable[..., tuple[Params, State]]
    apply: Callable[..., tuple[Any, State]]
    input_shape: Shape
    output_shape: Shape
    dtype: str = "float32"
    runs: tuple[Run, ...] = ()
    """The runs `apply` loops with `lax.scan` (none when compiled with `scan=False`)."""

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


_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def compile_graph(graph: Graph, *, dtype: str = "float32", scan: bool = True) -> CompiledModel:
    """Lower a fully checked graph (shapes set, projections inserted) to JAX.

    Args:
        graph: the front end's output.
        dtype: the compute dtype: `"float32"`, or `"bfloat16"` to run in bf16 while
            parameters and batch-norm statistics stay float32.
        scan: loop each run of identical chained blocks (`graph.repeats.find_runs`)
            with `jax.lax.scan` over stacked parameters, so XLA compiles the block
            once; False unrolls every node. Same parameter names, same results to
            float rounding; only compile time differs.

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
    runs = tuple(find_runs(graph)) if scan else ()
    plan = _plan(order, runs)

    def init(key: jax.Array, packed: bool = False) -> tuple[Params, State]:
        params: Params = {}
        state: State = {}
        # Each node's key is `fold_in(key, its index)`, drawn for all nodes in one
        # vectorised call: one threefry to compile instead of one per node.
        node_keys = _fold_in_many(key, range(len(order)))
        for step in plan:
            if isinstance(step, Run):
                # One traced init per body node, vmapped over the instances' keys:
                # the same values as initialising each node alone.
                group, running_group = {}, {}
                for rel, _ in step.body:
                    names = [step.node(i, rel) for i in range(len(step.instances))]
                    keys = node_keys[np.array([index[n] for n in names])]
                    leaves = jax.vmap(layers[names[0]].init)(keys)
                    if leaves:
                        group[rel] = leaves
                    running = layers[names[0]].state()
                    if running:
                        count = len(names)
                        running_group[rel] = {
                            k: jnp.broadcast_to(v, (count, *v.shape)) for k, v in running.items()
                        }
                if group:
                    params[packing.run_key(step)] = group
                if running_group:
                    state[packing.run_key(step)] = running_group
                continue
            leaves = layers[step].init(node_keys[index[step]])
            if leaves:
                params[step] = leaves
            running = layers[step].state()
            if running:
                state[step] = running
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

        return lax.scan(body, x, xs)

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
        if train and key is None and any(layers[n].needs_key for n in names):
            raise ValueError(
                "`dropout` needs a PRNG key when training: "
                "apply(params, state, x, train=True, key=jax.random.key(0))"
            )
        state_packed = packing.is_packed(state, runs)
        # Every node's output is wanted with `intermediates`: no loops then.
        steps: list[str | Run] = list(order) if intermediates else plan
        if intermediates:
            params, state = packing.unpack(params, runs), packing.unpack(state, runs)
        else:
            params, state = packing.pack(params, runs), packing.pack(state, runs)
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
            new_state = packing.pack(new_state, runs) if state_packed else new_state
        elif train:
            result = {"output": env[graph.output]}
            result.update({aux: env[head.output] for aux, head in graph.aux.items()})
        else:
            result = env[graph.output]
        if not state_packed and not intermediates:
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

"""The JAX backend: each op against a NumPy reference, then whole graphs (train, grad, dtype)."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from archdsl.backend.model import LOWERINGS, CompiledModel, Mode, compile_graph, param_count
from archdsl.errors import ArchValueError
from archdsl.graph import ops
from archdsl.graph.ir import AuxHead, Graph, Node
from archdsl.graph.shapes import Shape
from archdsl.lang.source import Source, Span

SPAN = Span(Source("<test>", ""), 1, 1, 1, 2)
RTOL = 1e-5
INFER = Mode(train=False, frozen=False, key=None)
TRAIN = Mode(train=True, frozen=False, key=None)


@pytest.fixture(autouse=True)
def _no_silent_broadcasting():
    # Equinox's setting: a lowering that relies on rank promotion fails here.
    with jax.numpy_rank_promotion("raise"):
        yield


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def normal(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return rng(seed).normal(size=shape).astype(np.float32)


def run_op(op, *xs, params=None, state=None, mode=INFER, seed=0):
    """Lower one op for these inputs' shapes and apply it eagerly: (out, params, state).

    Params default to random values (biases included) of exactly `op.param_shapes`.
    """
    in_shapes = tuple(tuple(x.shape[1:]) for x in xs)
    layer = LOWERINGS[type(op)](op, in_shapes, op.infer(*in_shapes))
    if params is None:
        shapes = op.param_shapes(*in_shapes)
        params = {k: jnp.asarray(normal(v, seed + i)) for i, (k, v) in enumerate(shapes.items())}
    state = layer.state() if state is None else state
    out, new_state = layer.apply(params, state, tuple(jnp.asarray(x) for x in xs), mode)
    assert out.shape[1:] == op.infer(*in_shapes)
    return np.asarray(out), params, new_state


def close(actual, expected, rtol=RTOL, atol=1e-5):
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=rtol, atol=atol)


def test_every_op_has_a_lowering():
    assert set(LOWERINGS) == set(ops.OPS.values())


# ---------------------------------------------------------------- NumPy references


def ref_same_pads(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow SAME: out = ceil(size / s), the odd pad at the end."""
    span = d * (k - 1) + 1
    total = max((-(-size // s) - 1) * s + span - size, 0)
    return total // 2, total - total // 2


def ref_conv(x, kernel, stride, pads, dilation=(1, 1), groups=1):
    """Direct convolution: one einsum per output position and group."""
    x = np.pad(x.astype(np.float64), ((0, 0), pads[0], pads[1], (0, 0)))
    n, h, w, _ = x.shape
    kh, kw, cin_g, cout = kernel.shape
    span = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    oh = (h - span[0]) // stride[0] + 1
    ow = (w - span[1]) // stride[1] + 1
    cout_g = cout // groups
    out = np.zeros((n, oh, ow, cout))
    for i in range(oh):
        for j in range(ow):
            r, c = i * stride[0], j * stride[1]
            patch = x[:, r : r + span[0] : dilation[0], c : c + span[1] : dilation[1], :]
            for g in range(groups):
                out[:, i, j, g * cout_g : (g + 1) * cout_g] = np.einsum(
                    "nhwc,hwco->no",
                    patch[..., g * cin_g : (g + 1) * cin_g],
                    kernel[..., g * cout_g : (g + 1) * cout_g],
                )
    return out


def ref_pool_out(size, k, s, lo, hi, ceil):
    """PyTorch's pooling output length (the last window must start inside input+lo)."""
    if ceil:
        out = -(-(size + lo + hi - k) // s) + 1
        if (out - 1) * s >= size + lo:
            out -= 1
        return out
    return (size + lo + hi - k) // s + 1


def ref_pool(x, kind, window, stride, pads, ceil):
    """PyTorch's max_pool2d / avg_pool2d(count_include_pad=True) with asymmetric pads."""
    n, h, w, c = x.shape
    oh = ref_pool_out(h, window[0], stride[0], *pads[0], ceil)
    ow = ref_pool_out(w, window[1], stride[1], *pads[1], ceil)
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * stride[0] - pads[0][0], j * stride[1] - pads[1][0]
            r1 = min(r0 + window[0], h + pads[0][1])
            c1 = min(c0 + window[1], w + pads[1][1])
            count = (r1 - r0) * (c1 - c0)
            cells = x[:, max(r0, 0) : min(r1, h), max(c0, 0) : min(c1, w), :]
            if kind == "max":
                out[:, i, j] = cells.max(axis=(1, 2))
            else:
                out[:, i, j] = cells.sum(axis=(1, 2), dtype=np.float64) / count
    return out


def ref_lrn(x, size, alpha, beta, k):
    c = x.shape[-1]
    out = np.zeros(x.shape)
    for ch in range(c):
        lo, hi = max(0, ch - size // 2), min(c, ch + (size - 1) // 2 + 1)
        sums = np.sum(x[..., lo:hi].astype(np.float64) ** 2, axis=-1)
        out[..., ch] = x[..., ch] / (k + alpha / size * sums) ** beta
    return out


# ---------------------------------------------------------------- convolution

CONV_CASES = [
    # (input HWC, filters, kernel, stride, padding, groups, dilation)
    ((7, 7, 3), 4, (3, 3), (1, 1), "valid", 1, (1, 1)),
    ((7, 7, 3), 4, (3, 3), (2, 2), "same", 1, (1, 1)),
    ((8, 6, 2), 3, (3, 2), (2, 1), "same", 1, (1, 1)),
    ((9, 9, 4), 6, (3, 3), (1, 1), ((1, 2), (0, 1)), 2, (1, 1)),
    ((9, 9, 4), 4, (3, 3), (1, 1), "same", 4, (2, 2)),
    ((10, 10, 2), 2, (3, 3), (3, 3), "valid", 1, (2, 1)),
    ((11, 11, 3), 5, (5, 5), (4, 4), ((2, 2), (2, 2)), 1, (1, 1)),
]


@pytest.mark.parametrize(
    ("shape", "filters", "kernel", "stride", "padding", "groups", "dil"), CONV_CASES
)
def test_conv_matches_direct_convolution(shape, filters, kernel, stride, padding, groups, dil):
    op = ops.Conv(filters, kernel, stride, padding, groups=groups, dilation=dil)
    x = normal((2, *shape))
    out, params, _ = run_op(op, x)
    assert params["kernel"].shape == (*kernel, shape[2] // groups, filters)
    if padding == "same":
        pads = tuple(ref_same_pads(shape[a], kernel[a], stride[a], dil[a]) for a in (0, 1))
    elif padding == "valid":
        pads = ((0, 0), (0, 0))
    else:
        pads = padding
    expected = ref_conv(x, np.asarray(params["kernel"]), stride, pads, dil, groups)
    close(out, expected + np.asarray(params["bias"]))


def test_conv_without_bias():
    op = ops.Conv(4, (3, 3), bias=False)
    x = normal((1, 5, 5, 2))
    out, params, _ = run_op(op, x)
    assert set(params) == {"kernel"}
    close(out, ref_conv(x, np.asarray(params["kernel"]), (1, 1), ((0, 0), (0, 0))))


def test_kernel_inits_are_he_normal_fan_out_and_glorot_normal():
    conv = LOWERINGS[ops.Conv](ops.Conv(256, (3, 3)), ((8, 8, 128),), (8, 8, 256))
    params = conv.init(jax.random.key(0))
    kernel = np.asarray(params["kernel"])
    # torchvision: kaiming_normal_(mode="fan_out"), std = sqrt(2 / (out_channels * kh * kw))
    assert kernel.std() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.02)
    assert abs(kernel.mean()) < 1e-3
    assert not np.asarray(params["bias"]).any()
    dense = LOWERINGS[ops.Dense](ops.Dense(300), ((500,),), (300,))
    kernel = np.asarray(dense.init(jax.random.key(0))["kernel"])
    assert kernel.std() == pytest.approx(math.sqrt(2 / 800), rel=0.02)
    assert np.abs(kernel).max() <= 2 * math.sqrt(2 / 800) / 0.8796 + 1e-6


# ---------------------------------------------------------------- pooling

POOL_CASES = [
    # (input HWC, window, stride, padding, ceil)
    ((6, 6, 2), (2, 2), None, "valid", False),
    ((7, 7, 2), (3, 3), (2, 2), "valid", False),
    ((7, 7, 2), (3, 3), (2, 2), "valid", True),  # GoogLeNet: 112 -> 56 style
    ((8, 8, 2), (3, 3), (2, 2), "valid", True),  # the partial last window
    ((8, 9, 2), (3, 3), (2, 2), ((1, 1), (1, 1)), False),  # ResNet stem
    ((8, 9, 2), (3, 3), (2, 2), ((1, 1), (1, 1)), True),
    ((10, 10, 3), (3, 3), (1, 1), "same", False),  # inception's pool branch
    ((9, 9, 1), (2, 2), (2, 2), "same", True),
    ((14, 14, 2), (5, 5), (3, 3), "valid", True),  # GoogLeNet aux avgpool 14 -> 4
    ((5, 5, 2), (3, 3), (3, 3), ((1, 1), (1, 1)), True),  # a window would start in the pad
    ((5, 5, 2), (2, 2), (3, 3), ((1, 1), (1, 1)), True),  # ... and the input is cropped
]


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize(("shape", "window", "stride", "padding", "ceil"), POOL_CASES)
def test_pool_matches_pytorch_semantics(kind, shape, window, stride, padding, ceil):
    cls = ops.MaxPool if kind == "max" else ops.AvgPool
    op = cls(window, stride, padding, ceil)
    x = normal((2, *shape))
    out, params, _ = run_op(op, x)
    assert params == {}
    strides = stride or window
    if padding == "same":
        pads = tuple(ref_same_pads(shape[a], window[a], strides[a]) for a in (0, 1))
    elif padding == "valid":
        pads = ((0, 0), (0, 0))
    else:
        pads = padding
    close(out, ref_pool(x, kind, window, strides, pads, ceil))


def test_max_pool_ignores_padding_even_for_negative_inputs():
    x = -np.abs(normal((1, 4, 4, 1))) - 1
    out, _, _ = run_op(ops.MaxPool((3, 3), (1, 1), "same"), x)
    assert (out < -1).all()


@pytest.mark.parametrize("kind", ["globalavgpool", "globalmaxpool"])
def test_global_pools(kind):
    x = normal((3, 4, 5, 6))
    out, _, _ = run_op(ops.OPS[kind](), x)
    expected = x.mean(axis=(1, 2)) if kind == "globalavgpool" else x.max(axis=(1, 2))
    close(out, expected)


# ---------------------------------------------------------------- dense, flatten, lrn


def test_flatten_is_row_major_nhwc():
    x = normal((2, 3, 4, 5))
    out, _, _ = run_op(ops.Flatten(), x)
    close(out, x.reshape(2, 60))


@pytest.mark.parametrize("bias", [True, False])
def test_dense(bias):
    op = ops.Dense(7, bias=bias)
    x = normal((4, 5))
    out, params, _ = run_op(op, x)
    expected = x.astype(np.float64) @ np.asarray(params["kernel"])
    close(out, expected + (np.asarray(params["bias"]) if bias else 0))


def test_dense_over_the_last_axis_of_a_rank_3_input():
    op = ops.Dense(3)
    x = normal((2, 4, 4, 5))
    out, params, _ = run_op(op, x)
    expected = np.einsum("nhwc,co->nhwo", x, np.asarray(params["kernel"]))
    close(out, expected + np.asarray(params["bias"]))


@pytest.mark.parametrize(
    ("size", "alpha", "beta", "k"), [(5, 1e-4, 0.75, 2.0), (3, 0.5, 0.5, 1.0), (4, 2.0, 1.0, 1.0)]
)
def test_lrn_matches_the_caffe_formula(size, alpha, beta, k):
    x = normal((2, 3, 3, 7)) * 3
    out, _, _ = run_op(ops.LRN(size, alpha, beta, k), x)
    close(out, ref_lrn(x, size, alpha, beta, k))


# ---------------------------------------------------------------- activations


def _erf(x):
    return np.vectorize(math.erf)(x)


ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.clip(x, 0, 6),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "softmax": lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True),
    "log_softmax": lambda x: x - np.log(np.exp(x).sum(-1, keepdims=True)),
    "gelu": lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
    "silu": lambda x: x / (1 + np.exp(-x)),
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "identity": lambda x: x,
    # torch.nn.Hardswish and Hardsigmoid: relu6(x + 3) / 6 gates
    "hardswish": lambda x: x * np.clip(x + 3, 0, 6) / 6,
    "hardsigmoid": lambda x: np.clip(x + 3, 0, 6) / 6,
}


def test_activation_table_covers_every_activation_op():
    names = {n for n, cls in ops.OPS.items() if issubclass(cls, ops.Activation)}
    assert names == set(ACTIVATIONS) | {"leaky_relu"}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation(name):
    x = normal((3, 8)) * 4
    out, _, _ = run_op(ops.OPS[name](), x)
    close(out, ACTIVATIONS[name](x.astype(np.float64)))


def test_leaky_relu_slope():
    x = normal((3, 8))
    out, _, _ = run_op(ops.LeakyRelu(0.2), x)
    close(out, np.where(x > 0, x, 0.2 * x))


# ---------------------------------------------------------------- dropout


def test_dropout_is_identity_at_inference_and_scales_kept_units_in_training():
    x = np.abs(normal((4, 1000))) + 1
    op = ops.Dropout(0.25)
    out, _, _ = run_op(op, x)
    close(out, x)
    out, _, _ = run_op(op, x, mode=Mode(train=True, frozen=False, key=jax.random.key(3)))
    kept = out != 0
    close(out[kept], x[kept] / 0.75)
    assert 0.72 < kept.mean() < 0.78


# ---------------------------------------------------------------- batch norm


def test_batchnorm_training_uses_batch_statistics_and_updates_running_ones():
    op = ops.BatchNorm(eps=1e-3, momentum=0.8)
    x = normal((6, 3, 3, 4)) * 2 + 1
    scale, bias = normal((4,), seed=1), normal((4,), seed=2)
    params = {"scale": jnp.asarray(scale), "bias": jnp.asarray(bias)}
    state = {"mean": jnp.full((4,), 0.5), "var": jnp.full((4,), 2.0)}
    out, _, new = run_op(op, x, params=params, state=state, mode=TRAIN)
    x64 = x.astype(np.float64)
    mean, var = x64.mean(axis=(0, 1, 2)), x64.var(axis=(0, 1, 2))
    close(out, (x64 - mean) / np.sqrt(var + 1e-3) * scale + bias, atol=1e-4)
    close(new["mean"], 0.8 * 0.5 + 0.2 * mean)
    close(new["var"], 0.8 * 2.0 + 0.2 * var)


def test_batchnorm_inference_uses_running_statistics():
    op = ops.BatchNorm()
    x = normal((2, 5))
    mean, var = normal((5,), seed=1), np.abs(normal((5,), seed=2)) + 0.5
    _, params, state = run_op(op, x)
    assert {k: v.shape for k, v in state.items()} == op.state_shapes((5,))
    state = {"mean": jnp.asarray(mean), "var": jnp.asarray(var)}
    out, _, same = run_op(op, x, params=params, state=state)
    scale, bias = np.asarray(params["scale"]), np.asarray(params["bias"])
    close(out, (x - mean) / np.sqrt(var + 1e-5) * scale + bias)
    assert same is state


def test_frozen_batchnorm_stays_in_inference_mode_when_training():
    op = ops.BatchNorm()
    x = normal((4, 5)) + 3
    params = {"scale": jnp.ones(5), "bias": jnp.zeros(5)}
    state = {"mean": jnp.zeros(5), "var": jnp.ones(5)}
    frozen = Mode(train=True, frozen=True, key=None)
    out, _, new = run_op(op, x, params=params, state=state, mode=frozen)
    close(out, x / np.sqrt(1 + 1e-5))
    assert new is state


# ---------------------------------------------------------------- graph constructs


def test_add_concat_and_residual():
    a, b, c = normal((2, 3, 3, 4)), normal((2, 3, 3, 4), 1), normal((2, 3, 3, 2), 2)
    close(run_op(ops.Add(), a, b, a)[0], a + b + a)
    close(run_op(ops.Residual(), a, b)[0], a + b)
    close(run_op(ops.Concat(), a, c, b)[0], np.concatenate([a, c, b], axis=-1))


def test_hard_activations_at_their_kinks():
    x = np.array([[-4.0, -3.0, -1.5, 0.0, 1.5, 3.0, 4.0]], np.float32)
    close(run_op(ops.Hardsigmoid(), x)[0], [[0, 0, 0.25, 0.5, 0.75, 1, 1]])
    close(run_op(ops.Hardswish(), x)[0], [[0, 0, -0.375, 0, 1.125, 3, 4]])


def test_multiply_equal_shapes():
    a, b, c = normal((2, 3, 3, 4)), normal((2, 3, 3, 4), 1), normal((2, 3, 3, 4), 2)
    close(run_op(ops.Multiply(), a, b, c)[0], a * b * c)
    v, w = normal((2, 5)), normal((2, 5), 1)
    close(run_op(ops.Multiply(), v, w)[0], v * w)


@pytest.mark.parametrize("gate_shape", [(4,), (1, 1, 4)])
@pytest.mark.parametrize("gate_first", [False, True])
def test_multiply_broadcasts_a_per_channel_gate_over_each_example(gate_shape, gate_first):
    x = normal((2, 3, 5, 4))
    gate = normal((2, *gate_shape), 1)
    inputs = (gate, x) if gate_first else (x, gate)
    out, params, _ = run_op(ops.Multiply(), *inputs)
    assert params == {}
    # each example's gate scales that example's channels only (not another example's)
    expected = x * gate.reshape(2, 1, 1, 4)
    close(out, expected)


@pytest.mark.parametrize(
    ("shape", "stride"), [((7, 7, 3), (2, 2)), ((6, 6, 3), (1, 1)), ((8, 8, 2), (2, 2))]
)
def test_zeropad_subsamples_and_appends_zero_channels(shape, stride):
    x = normal((2, *shape))
    out, params, _ = run_op(ops.ZeroPad(8, stride), x)
    assert params == {}
    sub = x[:, :: stride[0], :: stride[1], :]
    close(out[..., : shape[2]], sub)
    assert (out[..., shape[2] :] == 0).all()


def test_zeropad_on_vectors():
    x = normal((2, 3))
    out, _, _ = run_op(ops.ZeroPad(5), x)
    close(out, np.pad(x, ((0, 0), (0, 2))))


@pytest.mark.parametrize("train", [False, True])
def test_project_is_a_strided_1x1_conv_then_batch_norm(train):
    op = ops.Project(6, (2, 2))
    x = normal((3, 7, 7, 4))
    _, params, state = run_op(op, x)
    mode = TRAIN if train else INFER
    out, _, new = run_op(op, x, params=params, state=state, mode=mode)
    y = ref_conv(x, np.asarray(params["kernel"]), (2, 2), ((0, 0), (0, 0)))
    mean, var = (y.mean(axis=(0, 1, 2)), y.var(axis=(0, 1, 2))) if train else (0.0, 1.0)
    expected = (y - mean) / np.sqrt(var + 1e-5) * np.asarray(params["scale"]) + np.asarray(
        params["bias"]
    )
    close(out, expected, atol=1e-4)
    if train:
        close(new["mean"], 0.1 * y.mean(axis=(0, 1, 2)))


def test_project_without_batch_norm_and_on_vectors():
    op = ops.Project(4, batchnorm=False)
    x = normal((3, 6))
    out, params, state = run_op(op, x)
    assert set(params) == {"kernel", "bias"} and state == {}
    close(out, x.astype(np.float64) @ np.asarray(params["kernel"]) + np.asarray(params["bias"]))


# ---------------------------------------------------------------- whole graphs


def build(input_shape: Shape, steps, *, aux=None, frozen=(), name="net") -> Graph:
    """A graph from `(name, op)` or `(name, op, inputs)` steps, shapes from `Op.infer`."""
    g = Graph(name)
    g.add("input", Node(ops.Input(input_shape), (), SPAN, shape=input_shape))
    prev = last = "input"
    head = None
    for step in steps:
        node_name, op, *rest = step
        inputs = tuple(rest[0]) if rest else (last,)
        shapes = [g.node(i).shape for i in inputs]
        in_aux = aux is not None and node_name.startswith("aux.")
        g.add(
            node_name,
            Node(
                op,
                inputs,
                SPAN,
                shape=op.infer(*shapes),
                frozen=node_name in frozen,
                aux="aux" if in_aux else None,
            ),
        )
        if in_aux:
            head = node_name
        else:
            prev = node_name
        last = node_name
    g.outputs = (prev,)
    if aux is not None:
        g.aux = {"aux": AuxHead(head, aux, SPAN)}
    return g


def small_net(**kw) -> Graph:
    """conv-bn-relu, a strided residual with a projection, an aux head, dropout, dense."""
    return build(
        (8, 8, 3),
        [
            ("conv1", ops.Conv(4, (3, 3), padding="same", bias=False)),
            ("bn1", ops.BatchNorm()),
            ("relu1", ops.Relu()),
            ("body", ops.Conv(8, (3, 3), (2, 2), "same")),
            ("body_bn", ops.BatchNorm()),
            ("shortcut", ops.Project(8, (2, 2)), ("relu1",)),
            ("res", ops.Residual(), ("body_bn", "shortcut")),
            ("relu2", ops.Relu()),
            ("aux.pool", ops.GlobalAvgPool()),
            ("aux.fc", ops.Dense(5)),
            ("pool", ops.MaxPool((3, 3), (2, 2), ceil=True), ("relu2",)),
            ("flat", ops.Flatten()),
            ("drop", ops.Dropout(0.5)),
            ("fc", ops.Dense(5)),
        ],
        **kw,
    )


@pytest.fixture(scope="module")
def model() -> CompiledModel:
    return compile_graph(small_net(aux=0.3))


@pytest.fixture(scope="module")
def variables(model):
    return model.init(jax.random.key(0))


def test_init_builds_exactly_the_ops_param_and_state_shapes(model, variables):
    params, state = variables
    g = model.graph
    for name, node in g.items():
        shapes = [g.node(i).shape for i in node.inputs]
        want = node.op.param_shapes(*shapes)
        assert {k: v.shape for k, v in params.get(name, {}).items()} == want, name
        assert {k: v.shape for k, v in state.get(name, {}).items()} == node.op.state_shapes(*shapes)
        assert all(v.dtype == jnp.float32 for v in params.get(name, {}).values())
    assert params["shortcut"]["kernel"].shape == (1, 1, 4, 8)


def test_init_is_deterministic_and_per_node(model):
    a, _ = model.init(jax.random.key(0))
    b, _ = model.init(jax.random.key(0))
    c, _ = model.init(jax.random.key(1))
    np.testing.assert_array_equal(a["body"]["kernel"], b["body"]["kernel"])
    assert not np.allclose(a["body"]["kernel"], c["body"]["kernel"])


def test_inference_returns_the_main_output_only(model, variables):
    params, state = variables
    x = normal((2, 8, 8, 3))
    out, new_state = model.apply(params, state, x)
    assert out.shape == (2, *model.output_shape) == (2, 5)
    assert out.dtype == jnp.float32
    assert jax.tree.all(jax.tree.map(np.array_equal, new_state, state))
    # Aux heads are not computed at inference: their parameters are not even needed.
    no_aux = {k: v for k, v in params.items() if not k.startswith("aux.")}
    again, _ = model.apply(no_aux, state, x)
    close(again, out)


def test_training_returns_aux_outputs_and_new_statistics(model, variables):
    params, state = variables
    x = normal((2, 8, 8, 3))
    out, new_state = model.apply(params, state, x, train=True, key=jax.random.key(1))
    assert set(out) == {"output", "aux"}
    assert out["output"].shape == (2, 5) and out["aux"].shape == (2, 5)
    assert not np.allclose(new_state["bn1"]["mean"], state["bn1"]["mean"])
    assert not np.allclose(new_state["shortcut"]["var"], state["shortcut"]["var"])


def test_training_with_dropout_needs_a_key(model, variables):
    with pytest.raises(ValueError, match="`dropout` needs a PRNG key"):
        model.apply(*variables, normal((1, 8, 8, 3)), train=True)


def test_intermediates_give_every_node_at_its_predicted_shape(model, variables):
    env, _ = model.apply(*variables, normal((2, 8, 8, 3)), intermediates=True)
    assert set(env) == set(model.graph.order())
    for name, node in model.graph.items():
        assert env[name].shape == (2, *node.shape), name


def test_wrong_input_shape_is_a_clear_error(model, variables):
    with pytest.raises(ArchValueError, match=r"takes a batch of shape \(N, 8, 8, 3\)"):
        model.apply(*variables, normal((2, 8, 8, 1)))


def test_missing_parameters_are_a_clear_error(model, variables):
    params, state = variables
    partial = {k: v for k, v in params.items() if k not in ("conv1", "fc")}
    with pytest.raises(ArchValueError, match="no parameters for 2 node"):
        model.apply(partial, state, normal((1, 8, 8, 3)))


def cross_entropy(logits, labels):
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))


def test_forward_and_backward_train_the_network(model, variables):
    params, state = variables
    x = jnp.asarray(normal((8, 8, 8, 3)))
    labels = jnp.arange(8) % 5

    def loss(params, state, key):
        out, new_state = model.apply(params, state, x, train=True, key=key)
        total = cross_entropy(out["output"], labels) + 0.3 * cross_entropy(out["aux"], labels)
        return total, new_state

    grad = jax.jit(jax.grad(loss, has_aux=True))
    grads, _ = grad(params, state, jax.random.key(2))
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    for name in ("conv1", "shortcut", "fc", "aux.fc"):
        assert np.abs(grads[name]["kernel"]).max() > 0, name
    key = jax.random.key(2)
    before = loss(params, state, key)[0]
    for _ in range(5):
        grads, state = grad(params, state, key)
        params = jax.tree.map(lambda p, g: p - 0.05 * g, params, grads)
    assert loss(params, state, key)[0] < before


def test_frozen_nodes_get_no_gradient_and_keep_their_statistics(variables):
    model = compile_graph(small_net(aux=0.3, frozen=("conv1", "bn1")))
    params, state = variables  # the same parameter tree: frozen changes no shape
    x = jnp.asarray(normal((4, 8, 8, 3)))

    def loss(params):
        out, _ = model.apply(params, state, x, train=True, key=jax.random.key(0))
        return jnp.sum(out["output"] ** 2)

    grads = jax.grad(loss)(params)
    assert not np.asarray(grads["conv1"]["kernel"]).any()
    assert not np.asarray(grads["bn1"]["scale"]).any()
    assert np.asarray(grads["body"]["kernel"]).any()
    _, new_state = model.apply(params, state, x, train=True, key=jax.random.key(0))
    np.testing.assert_array_equal(new_state["bn1"]["mean"], state["bn1"]["mean"])
    mask = model.trainable(params)
    assert mask["conv1"] == {"kernel": False}
    assert mask["bn1"] == {"scale": False, "bias": False}
    assert mask["fc"] == {"kernel": True, "bias": True}


def test_apply_vmaps_over_an_ensemble_of_parameters(model):
    members = [model.init(jax.random.key(i)) for i in range(3)]
    params, state = jax.tree.map(lambda *a: jnp.stack(a), *members)
    x = jnp.asarray(normal((2, 8, 8, 3)))
    outs, _ = jax.vmap(lambda p, s: model.apply(p, s, x))(params, state)
    assert outs.shape == (3, 2, 5)
    one, _ = model.apply(
        jax.tree.map(lambda a: a[1], params), jax.tree.map(lambda a: a[1], state), x
    )
    close(outs[1], one)


def test_bfloat16_agrees_with_float32_to_bfloat16_precision(model, variables):
    bf16 = compile_graph(model.graph, dtype="bfloat16")
    shapes = jax.eval_shape(bf16.init, jax.random.key(0))
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(shapes))
    params, state = variables
    x = jnp.asarray(normal((4, 8, 8, 3)))
    want, _ = model.apply(params, state, x)
    got, _ = bf16.apply(params, state, x)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=5e-2, atol=5e-2 * float(jnp.abs(want).max()))
    _, new_state = bf16.apply(params, state, x, train=True, key=jax.random.key(0))
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(new_state))


def test_unknown_dtype_is_refused():
    with pytest.raises(ArchValueError, match="unknown dtype"):
        compile_graph(small_net(), dtype="float8")


# ---------------------------------------------------------------- the spec files

SPECS = sorted(Path(__file__).resolve().parents[1].joinpath("specs").glob("*.arch"))


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_spec_shapes_and_parameter_count_agree_with_the_front_end(path):
    """stax's _CheckShapeAgreement at every node of every network, without allocating.

    Files of blocks only (no network) have nothing to check here.
    """
    from archdsl.frontend import build_program_graph
    from archdsl.graph.report import build_report
    from archdsl.lang.loader import load_file

    program = load_file(path)
    for network in program.networks:
        if any(p.default is None for p in network.params):
            continue
        graph = build_program_graph(program, network.name.text, {})
        model = compile_graph(graph)
        params, state = jax.eval_shape(model.init, jax.random.key(0))
        x = jax.ShapeDtypeStruct((2, *model.input_shape), jnp.float32)
        env, _ = jax.eval_shape(
            lambda p, s, x, model=model: model.apply(p, s, x, intermediates=True),
            params,
            state,
            x,
        )
        for name, node in graph.items():
            assert env[name].shape == (2, *node.shape), (network.name.text, name)
        assert param_count(params) == build_report(graph).params


def test_compile_file_passes_network_arguments():
    from archdsl.compiler import compile_file

    path = Path(__file__).resolve().parents[1] / "specs" / "lenet5.arch"
    model = compile_file(path, classes=7)
    assert model.input_shape == (32, 32, 1) and model.output_shape == (7,)
    params, _ = jax.eval_shape(model.init, jax.random.key(0))
    assert params["output"]["kernel"].shape == (84, 7)

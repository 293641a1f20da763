"""Runs of identical blocks: found in the graph, looped with `lax.scan`, same results as unrolled."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from archdsl.backend.model import compile_graph
from archdsl.errors import ArchValueError
from archdsl.frontend import build_graph, build_graph_text
from archdsl.graph.repeats import find_runs

TOY = """
block blk(c) {{
    residual {{ conv c 3x3 same bias = false as conv -> batchnorm as bn -> relu -> dropout 0.25 }}
}}
network Toy(n = 3) {{
    input 6x6x4
    conv 6 1x1 as stem
    {frozen}repeat n {{ blk(6) }} as blocks
    blk(8) as wide
    repeat 3 {{ blk(8) }} as tail
    globalavgpool -> dense 5 as fc
}}
"""


def toy(n: int = 3, frozen: bool = False):
    return build_graph_text(TOY.format(frozen="frozen " if frozen else ""), n=n)


def test_finds_resnet_stages() -> None:
    runs = find_runs(build_graph("specs/resnet152.arch", classes=10, size=64))
    assert [(r.instances[0], r.instances[-1], r.output) for r in runs] == [
        ("layer1.1", "layer1.2", "relu_2"),
        ("layer2.1", "layer2.7", "relu_2"),
        ("layer3.1", "layer3.35", "relu_2"),
        ("layer4.1", "layer4.2", "relu_2"),
    ]
    # The first block of a stage changes stride and width: it is not in the run.
    assert runs[2].input == "layer3.0.relu_2"


def test_different_blocks_are_not_one_run() -> None:
    runs = find_runs(toy(n=4))
    # `wide` (8 channels, with a projection) breaks the chain; `tail` is its own run.
    assert [(r.instances, r.input) for r in runs] == [
        (("blocks.0", "blocks.1", "blocks.2", "blocks.3"), "stem"),
        (("tail.0", "tail.1", "tail.2"), "wide.residual"),
    ]
    assert find_runs(build_graph("specs/tiny_resnet.arch")) == []


def _train(model, params, state, x, key):
    def loss(params, state):
        out, state = model.apply(params, state, x, train=True, key=key)
        return jnp.sum(out["output"] ** 2), (out["output"], state)

    return jax.jit(jax.value_and_grad(loss, has_aux=True))(params, state)


def _close(a, b, rtol: float = 1e-5) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=rtol * float(jnp.max(jnp.abs(v)) + 1))


def test_scan_equals_unrolled() -> None:
    graph = toy(frozen=True)
    scanned, unrolled = compile_graph(graph, scan=True), compile_graph(graph, scan=False)
    assert len(scanned.runs) == 2 and unrolled.runs == ()
    params, state = scanned.init(jax.random.key(0))
    # Vmapped per-instance init draws exactly the per-node values.
    _close((params, state), unrolled.init(jax.random.key(0)), rtol=0)
    packed, packed_state = scanned.init(jax.random.key(0), packed=True)
    assert "blocks.0..blocks.2" in packed and "blocks.0.conv" not in packed
    assert packed["blocks.0..blocks.2"]["conv"]["kernel"].shape == (3, 3, 3, 6, 6)
    _close((scanned.pack(params), scanned.pack(state)), (packed, packed_state), rtol=0)
    assert scanned.pack(packed) is packed
    x = jax.random.normal(jax.random.key(1), (3, 6, 6, 4))
    key = jax.random.key(2)
    # What a training step carries: packed params in, packed state and gradients out.
    (loss_s, (out_s, state_s)), grads_s = _train(scanned, packed, packed_state, x, key)
    (loss_u, (out_u, state_u)), grads_u = _train(unrolled, params, state, x, key)
    assert "blocks.0..blocks.2" in state_s and "blocks.0..blocks.2" in grads_s
    state_s, grads_s = scanned.unpack(state_s), scanned.unpack(grads_s)
    _close((loss_s, out_s, state_s, grads_s), (loss_u, out_u, state_u, grads_u))
    # `blocks` is frozen: no gradient, no batch-norm update; `tail` trains.
    assert bool(jnp.all(grads_s["blocks.2.conv"]["kernel"] == 0))
    np.testing.assert_array_equal(state_s["blocks.1.bn"]["mean"], state["blocks.1.bn"]["mean"])
    assert not bool(jnp.all(grads_s["tail.1.conv"]["kernel"] == 0))
    mask = scanned.trainable(packed)
    assert jax.tree.structure(mask) == jax.tree.structure(packed)
    assert mask["blocks.0..blocks.2"]["conv"]["kernel"] is False
    # Inference looped over packed params; per-layer params in, per-layer state out.
    _close(scanned.apply(packed, packed_state, x)[0], unrolled.apply(params, state, x)[0])
    out, mixed = scanned.apply(packed, state, x, train=True, key=key)
    _close((out["output"], mixed), (out_s, state_u))
    # Every node's output with `intermediates`.
    inter_s, inter_state = scanned.apply(params, state, x, intermediates=True)
    inter_u, _ = unrolled.apply(params, state, x, intermediates=True)
    assert set(inter_s) == set(inter_u) and "blocks.1.bn" in inter_s
    assert set(inter_state) == set(state)
    _close(inter_s, inter_u)


def test_kernels_drawn_together_equal_kernels_drawn_alone() -> None:
    # `init` draws every kernel in one call per initialiser; each node's own `init`,
    # with its key (`fold_in(key, graph index)`), gives the same values.
    from archdsl.backend import draws
    from archdsl.backend.layer import conv_kernel_init, dense_kernel_init
    from archdsl.backend.lowerings import lower_node

    graph = toy()
    model = compile_graph(graph, scan=True)
    key = jax.random.key(3)
    params, _ = model.init(key)
    order = graph.order()
    for name in ("stem", "blocks.1.conv", "wide.residual.shortcut", "fc"):
        alone = lower_node(graph, name).init(jax.random.fold_in(key, order.index(name)))
        _close(alone, params[name], rtol=0)
    # Kernels bigger than a chunk are cut from several; the scale follows the shape.
    shape = (3, 3, 64, 40)
    assert draws.chunks(shape) == 2
    big = conv_kernel_init(key, shape)
    assert big.shape == shape
    std = (2 / (9 * 40)) ** 0.5  # He normal, fan_out
    assert abs(float(jnp.std(big)) / std - 1) < 0.05
    assert not bool(jnp.all(big[..., :20] == big[..., 20:]))
    dense = dense_kernel_init(key, (300, 7))
    assert float(jnp.max(jnp.abs(dense))) <= 2 * (2 / 307) ** 0.5 / 0.87962566103423978 + 1e-6
    stacked = draws.draw_all(
        jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(2, dtype=jnp.uint32)),
        [draws.Request(conv_kernel_init, (1, 0), shape)],
    )[0]
    np.testing.assert_array_equal(stacked[0], conv_kernel_init(jax.random.fold_in(key, 1), shape))
    np.testing.assert_array_equal(stacked[1], conv_kernel_init(jax.random.fold_in(key, 0), shape))


def test_missing_packed_params_are_named() -> None:
    model = compile_graph(toy(), scan=True)
    packed, state = model.init(jax.random.key(0), packed=True)
    del packed["blocks.0..blocks.2"]["conv"]
    with pytest.raises(ArchValueError, match=r"no parameters for 3 node\(s\): `blocks.0.conv`"):
        model.apply(packed, state, jnp.zeros((1, 6, 6, 4)))


def _convolutions(model, packed: bool) -> int:
    params, state = jax.eval_shape(functools.partial(model.init, packed=packed), jax.random.key(0))
    x = jax.ShapeDtypeStruct((2, 6, 6, 4), jnp.float32)
    text = jax.jit(lambda p, s, x: model.apply(p, s, x)[0]).lower(params, state, x).as_text()
    return text.count("stablehlo.convolution")


def test_scan_compiles_one_block_however_many_repeats() -> None:
    counts = {
        (scan, n): _convolutions(compile_graph(toy(n=n), scan=scan), packed=True)
        for scan in (True, False)
        for n in (3, 12)
    }
    assert counts[True, 3] == counts[True, 12]
    assert counts[False, 12] - counts[False, 3] == 9
    # Per-layer params run every node, as unrolled: nothing is stacked inside the call.
    per_layer = _convolutions(compile_graph(toy(n=12)), packed=False)
    assert per_layer == counts[False, 12]


def test_scan_is_the_default() -> None:
    assert [run.instances[0] for run in compile_graph(toy()).runs] == ["blocks.0", "tail.0"]


def test_runs_of_two_stay_unrolled() -> None:
    # A loop costs XLA more to compile than two blocks: `MIN_SCANNED` instances at least.
    model = compile_graph(toy(n=2), scan=True)
    assert [run.instances for run in model.runs] == [("tail.0", "tail.1", "tail.2")]
    assert len(find_runs(toy(n=2))) == 2


CONV_CASES = [
    # (height, width), kernel, stride, dilation, groups, pads
    ((7, 8), (3, 3), (1, 1), (1, 1), 1, ((1, 1), (1, 1))),
    ((9, 9), (3, 3), (2, 2), (1, 1), 1, ((0, 1), (1, 0))),
    ((8, 8), (1, 1), (2, 2), (1, 1), 1, ((0, 0), (0, 0))),
    ((9, 7), (2, 3), (3, 1), (2, 1), 2, ((0, 2), (1, 0))),
    ((8, 9), (3, 3), (1, 2), (2, 2), 4, ((2, 2), (2, 2))),
    ((7, 7), (3, 3), (2, 2), (1, 1), 4, ((1, 1), (1, 1))),
]


@pytest.mark.parametrize(("size", "window", "stride", "dilation", "groups", "pads"), CONV_CASES)
def test_loop_convolution_has_lax_gradients(size, window, stride, dilation, groups, pads) -> None:
    from jax import lax

    from archdsl.backend import loopconv

    x = jax.random.normal(jax.random.key(0), (3, *size, 4))
    kernel = jax.random.normal(jax.random.key(1), (*window, 4 // groups, 8))

    def plain(x, kernel):
        return lax.conv_general_dilated(
            x, kernel, stride, pads, rhs_dilation=dilation,
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups,
        )  # fmt: skip

    def loop(x, kernel):
        return loopconv.conv(x, kernel, stride, pads, dilation, groups)

    y, vjp_plain = jax.vjp(plain, x, kernel)
    y_loop, vjp_loop = jax.vjp(loop, x, kernel)
    np.testing.assert_array_equal(y_loop, y)
    cotangent = jax.random.normal(jax.random.key(2), y.shape)
    _close(vjp_loop(cotangent), vjp_plain(cotangent), rtol=1e-5)


def test_scanned_gradients_use_only_canonical_convolutions() -> None:
    # XLA's CPU compiler runs only NHWC/HWIO/NHWC convolutions with Eigen, and puts
    # others in that form only outside loops: a loop body must bring its own.
    import re

    model = compile_graph(toy(), scan=True)
    params, state = model.init(jax.random.key(0), packed=True)
    x = jnp.zeros((2, 6, 6, 4))

    def loss(params):
        out, _ = model.apply(params, state, x, train=True, key=jax.random.key(1))
        return jnp.sum(out["output"])

    text = jax.jit(jax.grad(loss)).lower(params).compile().as_text()
    labels = re.findall(r"dim_labels=([\w>-]+)", text)
    assert len(labels) >= 3 * 3  # forward, input and kernel gradient of each conv
    assert set(labels) == {"b01f_01io->b01f"}


def test_forward_mode_through_a_scanned_model_at_inference() -> None:
    graph = toy()
    scanned, unrolled = compile_graph(graph, scan=True), compile_graph(graph, scan=False)
    params, state = unrolled.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (2, 6, 6, 4))
    tangent = jax.random.normal(jax.random.key(2), x.shape)
    jvps = [
        jax.jvp(lambda x, m=m: m.apply(params, state, x)[0], (x,), (tangent,))
        for m in (scanned, unrolled)
    ]
    _close(jvps[0], jvps[1])


def test_a_run_without_parameters_loops_too() -> None:
    graph = build_graph_text("network Net {\n    input 3\n    repeat 4 { elu as e } as r\n}\n")
    scanned, unrolled = compile_graph(graph), compile_graph(graph, scan=False)
    assert [run.instances for run in scanned.runs] == [("r.0", "r.1", "r.2", "r.3")]
    x = jax.random.normal(jax.random.key(0), (2, 3))
    want = jax.nn.elu(jax.nn.elu(jax.nn.elu(jax.nn.elu(x))))
    _close(scanned.apply({}, {}, x)[0], want)
    _close(unrolled.apply({}, {}, x)[0], want)

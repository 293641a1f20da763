"""The zoo's new constructs on real arrays: split, shuffle, drop-path, and the blocks that
use them (a shuffle unit, an inverted residual with hardswish and squeeze-and-excitation),
checked against numpy; and a zoo-style network that learns the digits."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from archdsl.backend.model import compile_graph
from archdsl.frontend import build_graph_text
from archdsl.graph import ops
from archdsl.train.data import load_data
from archdsl.train.loop import TrainConfig, train

SPECS = Path(__file__).resolve().parents[1] / "specs"
RNG = np.random.default_rng(0)


def _run(text: str, x: np.ndarray, **apply: object):  # type: ignore[no-untyped-def]
    model = compile_graph(build_graph_text(text, str(SPECS / "test.arch")))
    params, state = model.init(jax.random.key(0))
    out, _ = model.apply(params, state, x, **apply)
    return model, params, state, out


# split and shuffle --------------------------------------------------------------------------


def test_split_takes_one_equal_group_of_channels():
    text = "network N {\n    input 3x3x12\n    split 3 index 2\n}\n"
    x = RNG.normal(size=(2, 3, 3, 12)).astype(np.float32)
    model, _, _, out = _run(text, x)
    assert model.output_shape == (3, 3, 4)
    np.testing.assert_array_equal(np.asarray(out), x[..., 8:12])


def test_shuffle_interleaves_the_groups():
    text = "network N {\n    input 2x2x6\n    shuffle 3\n}\n"
    x = RNG.normal(size=(2, 2, 2, 6)).astype(np.float32)
    _, _, _, out = _run(text, x)
    out = np.asarray(out)
    # channel j of group g (g * 2 + j) moves to j * 3 + g
    for g in range(3):
        for j in range(2):
            np.testing.assert_array_equal(out[..., j * 3 + g], x[..., g * 2 + j])


def test_a_shuffle_unit_passes_half_its_input_through_to_the_even_channels():
    text = 'import "shufflenet_v2_x1_0.arch"\nnetwork N {\n    input 6x6x8\n    unit() as u\n}\n'
    x = RNG.normal(size=(2, 6, 6, 8)).astype(np.float32)
    model, params, _, out = _run(text, x)
    out = np.asarray(out)
    assert model.output_shape == (6, 6, 8)
    # concat(first half, branch(second half)), shuffled in 2 groups: the kept half lands on
    # the even channels untouched, the branch's output on the odd ones
    np.testing.assert_array_equal(out[..., 0::2], x[..., :4])
    assert not np.allclose(out[..., 1::2], x[..., 4:])
    assert np.all(out[..., 1::2] >= 0)  # the branch ends in relu
    assert params["u.concat.branch2.dw.conv"]["kernel"].shape == (3, 3, 1, 4)  # depthwise


# drop-path ----------------------------------------------------------------------------------

DROP = "network N {\n    input 4x4x3\n    droppath 0.5\n}\n"


def test_droppath_is_the_identity_at_inference():
    x = RNG.normal(size=(8, 4, 4, 3)).astype(np.float32)
    _, _, _, out = _run(DROP, x)
    np.testing.assert_array_equal(np.asarray(out), x)


def test_droppath_drops_whole_examples_in_training_and_scales_survivors():
    x = RNG.normal(size=(64, 4, 4, 3)).astype(np.float32) + 5.0
    model, params, state, _ = _run(DROP, x)
    a, _ = model.apply(params, state, x, train=True, key=jax.random.key(1))
    b, _ = model.apply(params, state, x, train=True, key=jax.random.key(1))
    c, _ = model.apply(params, state, x, train=True, key=jax.random.key(2))
    a, b, c = (np.asarray(v["output"]) for v in (a, b, c))
    np.testing.assert_array_equal(a, b)  # the same key drops the same examples
    assert not np.array_equal(a, c)
    dropped = np.all(a == 0, axis=(1, 2, 3))
    kept = np.all(np.isclose(a, 2 * x), axis=(1, 2, 3))
    assert np.all(dropped | kept)  # each example is all dropped or all kept, x / (1 - 0.5)
    assert 10 < dropped.sum() < 54


def test_droppath_needs_a_key_in_training():
    x = RNG.normal(size=(2, 4, 4, 3)).astype(np.float32)
    model, params, state, _ = _run(DROP, x)
    with pytest.raises(ValueError, match="`droppath` needs a PRNG key when training"):
        model.apply(params, state, x, train=True)


# layer norm and layer scale (ConvNeXt) -------------------------------------------------------


def test_layer_norm_and_layer_scale_compute_as_numpy():
    text = (
        "network N {\n    input 3x3x6\n    layernorm eps = 1e-6 as ln -> layerscale 0.5 as ls\n}\n"
    )
    x = RNG.normal(size=(2, 3, 3, 6)).astype(np.float32) * 4 + 1
    model = compile_graph(build_graph_text(text))
    params, state = model.init(jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(params["ls"]["scale"]), np.full(6, 0.5, np.float32))
    params = {
        "ln": {"scale": RNG.uniform(0.5, 1.5, 6), "bias": RNG.normal(size=6)},
        "ls": {"scale": RNG.uniform(0.5, 1.5, 6)},
    }
    params = jax.tree.map(lambda a: np.asarray(a, np.float32), params)
    out, _ = model.apply(params, state, x)
    mean = x.mean(axis=-1, keepdims=True)
    normed = (x - mean) / np.sqrt(x.var(axis=-1, keepdims=True) + 1e-6)
    expected = (normed * params["ln"]["scale"] + params["ln"]["bias"]) * params["ls"]["scale"]
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-5, atol=1e-5)


# an inverted residual with hardswish and squeeze-and-excitation ---------------------------

BNECK = """\
import "mobilenet_v3_blocks.arch"
network N {
    input 6x6x8
    residual shortcut = identity { bneck_hswish_se(3, 24, 8) as b }
}
"""


def _hardswish(v: np.ndarray) -> np.ndarray:
    return v * np.clip(v + 3, 0, 6) / 6


def _bn(v: np.ndarray, p: dict, s: dict, eps: float = 1e-3) -> np.ndarray:
    return (v - s["mean"]) / np.sqrt(s["var"] + eps) * p["scale"] + p["bias"]


def _depthwise3x3(v: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    padded = np.pad(v, ((0, 0), (1, 1), (1, 1), (0, 0)))
    h, w = v.shape[1:3]
    return sum(
        padded[:, i : i + h, j : j + w, :] * kernel[i, j, 0, :] for i in range(3) for j in range(3)
    )


def test_inverted_residual_with_hardswish_and_se_computes_as_numpy():
    x = RNG.normal(size=(2, 6, 6, 8)).astype(np.float32)
    model = compile_graph(build_graph_text(BNECK, str(SPECS / "test.arch")))
    params, state = model.init(jax.random.key(0))
    # random running statistics, so that batch norm is not the identity
    state = {
        n: {"mean": RNG.normal(size=v["mean"].shape), "var": RNG.uniform(0.5, 2, v["var"].shape)}
        for n, v in state.items()
    }
    state = jax.tree.map(lambda a: np.asarray(a, np.float32), state)
    out, _ = model.apply(params, state, x)
    p = jax.tree.map(np.asarray, params)

    h = _hardswish(
        _bn(
            x @ p["b.expand.conv"]["kernel"][0, 0],
            p["b.expand.bn.batchnorm"],
            state["b.expand.bn.batchnorm"],
        )
    )
    h = _depthwise3x3(h, p["b.depthwise.conv"]["kernel"])
    h = _hardswish(_bn(h, p["b.depthwise.bn.batchnorm"], state["b.depthwise.bn.batchnorm"]))
    fc1, fc2 = p["b.se.multiply.scale.fc1"], p["b.se.multiply.scale.fc2"]
    squeeze = np.maximum(h.mean(axis=(1, 2)) @ fc1["kernel"] + fc1["bias"], 0)
    gate = np.clip((squeeze @ fc2["kernel"] + fc2["bias"]) + 3, 0, 6) / 6
    h = h * gate[:, None, None, :]
    h = _bn(
        h @ p["b.project.conv"]["kernel"][0, 0],
        p["b.project.bn.batchnorm"],
        state["b.project.bn.batchnorm"],
    )
    np.testing.assert_allclose(np.asarray(out), h + x, rtol=1e-4, atol=1e-4)
    assert fc1["kernel"].shape == (24, 8)  # make_divisible(24 // 4) = 8


# a zoo-style network learns the digits --------------------------------------------------------

# EfficientNet's MBConv (squeeze-and-excitation, drop-path) and ShuffleNetV2's units, with
# the default batch-norm momentum (MobileNetV3's 0.99 is too slow for a run this short).
ZOO_NET = """\
import "efficientnet_b0.arch"
import "shufflenet_v2_x1_0.arch"

network TinyZoo(classes = 10) {
    input 8x8x1
    conv 16 3x3 padding 1 bias = false as stem -> batchnorm as stem_bn -> hardswish
    mbconv_res(2, 3, 0.1) as b1                      : 8x8x16
    down_unit(32) as s1                              : 4x4x32
    unit() as s2                                     : 4x4x32
    globalavgpool -> dense classes as fc -> softmax  : classes
}
"""


@pytest.mark.slow
def test_a_zoo_style_network_learns_the_digits(tmp_path: Path):
    graph = build_graph_text(ZOO_NET, str(SPECS / "tiny_zoo.arch"))
    kinds = {type(graph.node(n).op) for n in graph.order()}
    assert {ops.Multiply, ops.Hardswish, ops.Split, ops.Shuffle, ops.DropPath} <= kinds
    data = load_data("digits", (8, 8, 1), 10)
    config = TrainConfig(
        epochs=4, batch_size=32, lr=1e-2, optimizer="adam", schedule="cosine", seed=0
    )
    result = train(graph, data, config, checkpoint_dir=tmp_path)
    assert result.test_accuracy >= 0.95, [h.test_accuracy for h in result.history]

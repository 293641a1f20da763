"""The zoo: torchvision's newer architectures reproduce its published figures exactly.

Front end only (parse, lower, passes, report): no arrays. Parameter counts are exact at
1000 classes; multiply-accumulates are within 2% of torchvision's GFLOPS column (which
counts multiply-accumulates), taken to three decimals from its weights' metadata (`_ops`).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from archdsl.frontend import build_graph
from archdsl.graph.report import Report, build_report

SPEC_DIR = Path(__file__).resolve().parents[1] / "specs"

# spec, parameters as torchvision counts them (at inference), GMACs at its input size.
ZOO = [
    ("squeezenet1_0", 1_248_424, 0.819),
    ("squeezenet1_1", 1_235_496, 0.349),
    ("mobilenet_v2", 3_504_872, 0.301),
    ("mobilenet_v3_large", 5_483_032, 0.217),
    ("mobilenet_v3_small", 2_542_856, 0.057),
    ("efficientnet_b0", 5_288_548, 0.386),
    ("shufflenet_v2_x1_0", 2_278_604, 0.145),
    ("resnext50_32x4d", 25_028_904, 4.23),
    ("wide_resnet50_2", 68_883_240, 11.398),
    ("vgg19_bn", 143_678_248, 19.632),
    ("densenet121", 7_978_856, 2.834),
    ("inception_v3", 23_834_568, 5.713),
    ("regnet_y_400mf", 4_344_144, 0.402),
    ("convnext_tiny", 28_589_128, 4.456),
]


@functools.cache
def report_of(spec: str) -> Report:
    return build_report(build_graph(SPEC_DIR / f"{spec}.arch"))


@pytest.mark.parametrize(("spec", "params", "gmacs"), ZOO, ids=[z[0] for z in ZOO])
def test_zoo_matches_torchvision(spec: str, params: int, gmacs: float):
    report = report_of(spec)
    assert report.inference_params == params
    assert report.trainable == report.params
    assert report.macs == pytest.approx(gmacs * 1e9, rel=0.02)


def test_inception_v3_counts_its_aux_head_as_torchvision():
    report = report_of("inception_v3")
    assert report.params == 27_161_264  # inception_v3(aux_logits=True)
    aux = [r for r in report.rows if r.name.startswith("AuxLogits.")]
    assert sum(r.params for r in aux) == 27_161_264 - 23_834_568
    assert all(r.macs == 0 or r.name.startswith("AuxLogits.") for r in aux)
    assert report.macs == sum(r.macs for r in report.rows if not r.name.startswith("AuxLogits"))


def test_densenet_grows_32_channels_per_layer():
    rows = {r.name: r for r in report_of("densenet121").rows}
    block = [rows[f"denseblock1.{i}.layer"].shape[-1] for i in range(6)]
    assert block == [64 + 32 * (i + 1) for i in range(6)]


def test_mobilenet_v2_depthwise_convs_have_one_filter_per_channel():
    rows = {r.name: r for r in report_of("mobilenet_v2").rows}
    # 3x3 depthwise over 96 expanded channels: 3 * 3 * 96 weights, no bias
    assert rows["stage3.0.depthwise"].params == 3 * 3 * 24 * 6
    # blocks that keep the shape add their input; the first of a stage does not
    assert rows["stage3.1.residual"].op == "residual"
    assert "stage3.0.residual" not in rows


def test_resnext_groups_its_3x3_convs_in_32():
    rows = {r.name: r for r in report_of("resnext50_32x4d").rows}
    assert rows["layer1.0.conv2"].params == 3 * 3 * (128 // 32) * 128
    assert rows["layer1.0.conv2"].attrs.endswith("groups 32 no bias")


def test_mobilenet_v3_squeezes_to_a_quarter_rounded_to_8():
    rows = {r.name: r for r in report_of("mobilenet_v3_large").rows}
    # 72 expanded channels: make_divisible(72 // 4) = 24, as torchvision
    assert rows["f4.se.multiply.scale.fc1"].shape == (24,)
    assert rows["f4.se.multiply"].shape == (28, 28, 72)
    assert rows["f12.se.multiply.scale.fc1"].shape == (168,)


def test_efficientnet_drops_paths_at_a_rate_growing_to_0_2():
    graph = build_graph(SPEC_DIR / "efficientnet_b0.arch")
    rates = [graph.node(n).op.rate for n in graph.order() if graph.node(n).op.name == "droppath"]
    assert rates == pytest.approx([0.2 * i / 16 for i in (2, 4, 6, 7, 9, 10, 12, 13, 14)])
    # the SE of a block is a quarter of its input width, not of the expanded width
    assert graph.node("b2.se.multiply.scale.fc1").shape == (4,)


def test_shufflenet_units_keep_half_and_shuffle():
    rows = {r.name: r for r in report_of("shufflenet_v2_x1_0").rows}
    assert rows["stage2.1.concat.branch1.keep"].shape == (28, 28, 58)
    assert rows["stage2.1.concat"].shape == rows["stage2.1.shuffle"].shape == (28, 28, 116)
    # nothing in the unit but its convolutions and batch norms has parameters
    assert rows["stage2.1.shuffle"].params == rows["stage2.1.concat.branch1.keep"].params == 0

"""The zoo: torchvision's newer architectures reproduce its published figures exactly.

Front end only (parse, lower, passes, report): no arrays. Parameter counts are exact at
1000 classes; multiply-accumulates are within 2% of torchvision's GFLOPS column (which
counts multiply-accumulates, to two or three significant digits).
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
    ("squeezenet1_0", 1_248_424, 0.82),
    ("squeezenet1_1", 1_235_496, 0.35),
    ("mobilenet_v2", 3_504_872, 0.30),
    ("resnext50_32x4d", 25_028_904, 4.23),
    ("wide_resnet50_2", 68_883_240, 11.40),
    ("vgg19_bn", 143_678_248, 19.63),
    ("densenet121", 7_978_856, 2.83),
    ("inception_v3", 23_834_568, 5.71),
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

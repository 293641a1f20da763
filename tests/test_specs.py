"""Every spec in specs/ compiles, and the classic networks reproduce their published figures.

Front end only (parse, lower, passes, report): no arrays, so the whole file runs in seconds.
Parameter counts are exact; multiply-accumulates are within 1% of the published figure
(torchvision's model table gives them to three significant digits).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest

from archdsl.cli import main
from archdsl.frontend import build_graph, build_program_graph
from archdsl.graph.ir import Graph
from archdsl.graph.ops import Project, Residual, ZeroPad
from archdsl.graph.report import Report, Saving, build_report
from archdsl.graph.shapes import Shape
from archdsl.lang.loader import load_file

ROOT = Path(__file__).resolve().parents[1]
SPEC_DIR = ROOT / "specs"
SPECS = sorted(SPEC_DIR.glob("*.arch"))

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


@functools.cache
def _compiled(
    spec: str, network: str | None, arguments: tuple[tuple[str, int], ...]
) -> tuple[Graph, Report]:
    graph = build_graph(SPEC_DIR / spec, network=network, **dict(arguments))
    return graph, build_report(graph)


def compiled(spec: str, network: str | None = None, **arguments: int) -> tuple[Graph, Report]:
    """The checked graph and report of `specs/<spec>.arch` (cached: reports are immutable)."""
    return _compiled(f"{spec}.arch", network, tuple(sorted(arguments.items())))


def report_of(spec: str, network: str | None = None, **arguments: int) -> Report:
    return compiled(spec, network, **arguments)[1]


def shape_at(report: Report, point: str) -> Shape:
    """The shape of a named layer, or of the last layer of a named scope (a block's output)."""
    rows = [r for r in report.rows if r.name == point or r.name.startswith(point + ".")]
    assert rows, f"no layer or scope `{point}` in {report.network}"
    exact = [r for r in rows if r.name == point]
    return (exact or rows)[-1].shape


def scope_macs(report: Report, *scopes: str) -> int:
    return sum(
        r.macs
        for r in report.rows
        if any(r.name == s or r.name.startswith(s + ".") for s in scopes)
    )


def scope_params(report: Report, *scopes: str) -> int:
    return sum(
        r.params
        for r in report.rows
        if any(r.name == s or r.name.startswith(s + ".") for s in scopes)
    )


# --- every spec ------------------------------------------------------------------------


def test_the_classic_lineage_is_all_there():
    names = {p.stem for p in SPECS}
    assert {
        "lenet5",
        "alexnet",
        "alexnet_2gpu",
        "vgg16",
        *RESNETS,
        "resnet_blocks",
        "googlenet",
        "googlenet_bn",
        "inception_3a",
        "bottleneck_1x1",
    } <= names


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_spec_compiles(path: Path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith(f"# specs/{path.name} - "), "a spec starts with its header comment"
    program = load_file(path)
    if not program.networks:  # a library of blocks, such as resnet_blocks.arch
        assert program.definitions, f"{path.name} defines nothing"
        return
    for network in program.networks:
        assert all(p.default is not None for p in network.params), (
            f"`{network.name.text}` must compile with its defaults"
        )
        graph = build_program_graph(program, network.name.text, {})
        report = build_report(graph)
        assert graph.checks, f"`{network.name.text}` asserts no shape"
        assert report.params > 0
        assert all(r.shape and min(r.shape) >= 1 for r in report.rows)
        assert report.inference_params <= report.params
        assert report.trainable <= report.params


def test_every_spec_passes_archdsl_check(capsys: pytest.CaptureFixture[str]):
    assert main(["check", *map(str, SPECS)]) == 0
    out = capsys.readouterr().out
    assert out.count("ok  ") == len(SPECS)


# --- published parameter counts and multiply-accumulates -------------------------------

# spec, params (exact), published MACs or None. Sources: LeNet-5 as taught; torchvision's
# model table (AlexNet 0.71, VGG-16 15.47, ResNet 1.81 / 3.66 / 4.09 / 7.80 / 11.51,
# GoogLeNet 1.50 GFLOPS, which are multiply-accumulates); Caffe's bvlc_alexnet.
PUBLISHED = [
    ("lenet5", 61_706, None),
    ("alexnet", 61_100_840, 0.71e9),
    ("alexnet_2gpu", 60_965_224, None),
    ("vgg16", 138_357_544, 15.47e9),
    ("resnet18", 11_689_512, 1.81e9),
    ("resnet34", 21_797_672, 3.66e9),
    ("resnet50", 25_557_032, 4.09e9),
    ("resnet101", 44_549_160, 7.80e9),
    ("resnet152", 60_192_808, 11.51e9),
    ("googlenet", 6_998_552, None),  # the paper's budget, "1.5 billion", is not a count
    ("googlenet_bn", 6_624_904, 1.50e9),
]


@pytest.mark.parametrize(("spec", "params", "macs"), PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_published_params_and_macs(spec: str, params: int, macs: float | None):
    report = report_of(spec)
    assert report.inference_params == params
    if macs is not None:
        assert report.macs == pytest.approx(macs, rel=0.01)


def test_resnet50_macs_exactly():
    assert report_of("resnet50").macs == 4_089_184_256


@pytest.mark.parametrize(
    ("spec", "with_aux", "without_aux"),
    [
        ("googlenet", 13_378_280, 6_998_552),  # the paper's, with Caffe's biases
        ("googlenet_bn", 13_004_888, 6_624_904),  # torchvision's googlenet(aux_logits=True/False)
    ],
)
def test_googlenet_aux_heads(spec: str, with_aux: int, without_aux: int):
    graph, report = compiled(spec)
    assert report.params == report.trainable == with_aux
    assert report.inference_params == without_aux
    assert sorted(graph.aux) == ["aux1", "aux2"]
    assert {h.weight for h in graph.aux.values()} == {0.3}
    # the heads hang off inception 4a and 4d (section 5), 14x14 maps pooled 5x5/3 to 4x4
    assert shape_at(report, "aux1.pool") == (4, 4, 512)
    assert shape_at(report, "aux2.pool") == (4, 4, 528)
    assert shape_at(report, "aux1.fc2") == shape_at(report, "aux2.fc2") == (1000,)
    # aux layers cost nothing at inference
    assert report.macs == sum(r.macs for r in report.rows if not r.name.startswith("aux"))


# table 1 of Szegedy et al., "ops" column (millions of multiply-adds). Its conv1 row (34M)
# and 5a row (54M) disagree with the table's own filter counts (118M and 51M), so they are
# left out; `conv2` is table 1's "convolution 3x3/1, 192" row, which includes the 1x1 reduce.
GOOGLENET_TABLE1_OPS = {
    ("conv2", "conv3"): 360,
    ("inception3a",): 128,
    ("inception3b",): 304,
    ("inception4a",): 73,
    ("inception4b",): 88,
    ("inception4c",): 100,
    ("inception4d",): 119,
    ("inception4e",): 170,
    ("inception5b",): 71,
    ("fc",): 1,
}


@pytest.mark.parametrize(
    ("scopes", "millions"),
    GOOGLENET_TABLE1_OPS.items(),
    ids=["+".join(s) for s in GOOGLENET_TABLE1_OPS],
)
def test_googlenet_table1_ops(scopes: tuple[str, ...], millions: int):
    assert abs(scope_macs(report_of("googlenet"), *scopes) / 1e6 - millions) < 1


def test_alexnet_two_gpu_split_is_groups():
    report = report_of("alexnet_2gpu")
    rows = {r.name: r for r in report.rows}
    # a grouped conv holds exactly the weights of its two halves
    assert rows["conv2"].params == 2 * (5 * 5 * 48 * 128 + 128)
    assert rows["conv3"].params == 3 * 3 * 256 * 384 + 384  # conv3 sees both GPUs
    assert rows["conv4"].params == 2 * (3 * 3 * 192 * 192 + 192)
    assert rows["conv5"].params == 2 * (3 * 3 * 192 * 128 + 128)
    assert [r.name for r in report.rows if r.op == "lrn"] == ["norm1", "norm2"]


# ResNet-20/32/44/56/110 on CIFAR-10 (He et al., table 6: 0.27M, 0.46M, 0.66M, 0.85M,
# 1.7M) with option A shortcuts. Exact: e.g. n = 3, 432 + 32 (conv1, bn1) + 14,016 + 51,072
# + 203,520 (three stages) + 650 (fc) = 269,722.
CIFAR_RESNETS = [
    (3, 269_722, 0.27),
    (5, 464_154, 0.46),
    (7, 658_586, 0.66),
    (9, 853_018, 0.85),
    (18, 1_727_962, 1.7),
]


@pytest.mark.parametrize(
    ("n", "params", "millions"),
    CIFAR_RESNETS,
    ids=[f"resnet{6 * n + 2}" for n, _, _ in CIFAR_RESNETS],
)
def test_cifar_resnets_table6(n: int, params: int, millions: float):
    report = report_of("resnet_zeropad", n=n)
    assert report.params == params
    assert round(params / 1e6, len(str(millions).split(".")[1])) == millions
    assert sum(r.op == "conv" for r in report.rows) + 1 == 6 * n + 2  # convs + fc layers


# --- shapes at the points the papers give ----------------------------------------------

STAGE_SHAPES: dict[str, dict[str, Shape]] = {
    "lenet5": {
        "c1": (28, 28, 6),
        "s2": (14, 14, 6),
        "c3": (10, 10, 16),
        "s4": (5, 5, 16),
        "flatten": (400,),
        "c5": (120,),
        "f6": (84,),
        "output": (10,),
    },
    "alexnet": {
        "conv1": (55, 55, 64),
        "pool1": (27, 27, 64),
        "conv2": (27, 27, 192),
        "pool2": (13, 13, 192),
        "conv3": (13, 13, 384),
        "conv4": (13, 13, 256),
        "conv5": (13, 13, 256),
        "pool5": (6, 6, 256),
        "fc6": (4096,),
        "fc8": (1000,),
    },
    "alexnet_2gpu": {
        "conv1": (55, 55, 96),
        "pool1": (27, 27, 96),
        "conv2": (27, 27, 256),
        "pool2": (13, 13, 256),
        "conv3": (13, 13, 384),
        "conv4": (13, 13, 384),
        "conv5": (13, 13, 256),
        "pool5": (6, 6, 256),
        "fc6": (4096,),
        "fc7": (4096,),
        "fc8": (1000,),
    },
    "vgg16": {
        "block1": (112, 112, 64),
        "block2": (56, 56, 128),
        "block3": (28, 28, 256),
        "block4": (14, 14, 512),
        "block5": (7, 7, 512),
        "fc6": (4096,),
        "fc8": (1000,),
    },
    "googlenet": {
        "conv1": (112, 112, 64),
        "maxpool1": (56, 56, 64),
        "conv3": (56, 56, 192),
        "maxpool2": (28, 28, 192),
        "inception3a": (28, 28, 256),
        "inception3b": (28, 28, 480),
        "maxpool3": (14, 14, 480),
        "inception4a": (14, 14, 512),
        "inception4b": (14, 14, 512),
        "inception4c": (14, 14, 512),
        "inception4d": (14, 14, 528),
        "inception4e": (14, 14, 832),
        "maxpool4": (7, 7, 832),
        "inception5a": (7, 7, 832),
        "inception5b": (7, 7, 1024),
        "avgpool": (1, 1, 1024),
        "fc": (1000,),
    },
    "inception_3a": {
        "inception3a.b1x1": (28, 28, 64),
        "inception3a.b3x3": (28, 28, 128),
        "inception3a.b5x5": (28, 28, 32),
        "inception3a.pool": (28, 28, 32),
        "inception3a": (28, 28, 256),
    },
    "resnet_zeropad": {
        "layer1": (32, 32, 16),
        "layer2": (16, 16, 32),
        "layer3": (8, 8, 64),
        "fc": (10,),
    },
}
# googlenet_bn has GoogLeNet's shapes, except that its pools are named as torchvision's
STAGE_SHAPES["googlenet_bn"] = {
    k: v for k, v in STAGE_SHAPES["googlenet"].items() if k != "avgpool"
} | {"avgpool": (1024,)}
for _depth, _width in ((18, 1), (34, 1), (50, 4), (101, 4), (152, 4)):
    STAGE_SHAPES[f"resnet{_depth}"] = {
        "stem.conv1": (112, 112, 64),
        "stem": (56, 56, 64),
        "layer1": (56, 56, 64 * _width),
        "layer2": (28, 28, 128 * _width),
        "layer3": (14, 14, 256 * _width),
        "layer4": (7, 7, 512 * _width),
        "avgpool": (512 * _width,),
        "fc": (1000,),
    }

STAGE_CASES = [
    (spec, point, shape) for spec, points in STAGE_SHAPES.items() for point, shape in points.items()
]


@pytest.mark.parametrize(
    ("spec", "point", "shape"), STAGE_CASES, ids=[f"{s}-{p}" for s, p, _ in STAGE_CASES]
)
def test_stage_shapes(spec: str, point: str, shape: Shape):
    assert shape_at(report_of(spec), point) == shape


@pytest.mark.parametrize("spec", ["googlenet", "googlenet_bn"])
def test_googlenet_halves_with_ceil_mode(spec: str):
    report = report_of(spec)
    sizes = [
        shape_at(report, p)[0]
        for p in ("input", "conv1", "maxpool1", "maxpool2", "maxpool3", "maxpool4")
    ]
    assert sizes == [224, 112, 56, 28, 14, 7]
    assert all(
        "ceil" in r.attrs for r in report.rows if r.name.startswith("maxpool") and r.op == "maxpool"
    )


@pytest.mark.parametrize("spec", RESNETS)
def test_resnet_size_argument_scales_the_stages(spec: str):
    report = report_of(spec, size=160)
    assert shape_at(report, "layer4")[:2] == (5, 5)
    assert report.params == report_of(spec).params


# --- residual projections --------------------------------------------------------------

INSERTED = {
    "resnet18": ["layer2.0", "layer3.0", "layer4.0"],
    "resnet34": ["layer2.0", "layer3.0", "layer4.0"],
    "resnet50": ["layer1.0", "layer2.0", "layer3.0", "layer4.0"],
    "resnet101": ["layer1.0", "layer2.0", "layer3.0", "layer4.0"],
    "resnet152": ["layer1.0", "layer2.0", "layer3.0", "layer4.0"],
    "resnet_zeropad": ["layer2.0", "layer3.0"],
    "tiny_resnet": ["layer2.0"],
    "transfer_resnet18": ["layer2.0", "layer3.0", "layer4.0"],
}


@pytest.mark.parametrize(("spec", "blocks"), INSERTED.items(), ids=list(INSERTED))
def test_projections_inserted_exactly_where_shapes_differ(spec: str, blocks: list[str]):
    graph, report = compiled(spec)
    inserted = [r.name for r in report.rows if r.inserted]
    assert inserted == [f"{b}.residual.shortcut" for b in blocks]
    residuals = [(n, node) for n, node in graph.items() if isinstance(node.op, Residual)]
    assert residuals
    for name, node in residuals:
        body, shortcut = node.inputs
        projected = graph.node(shortcut).synthetic
        source = graph.node(shortcut).inputs[0] if projected else shortcut
        assert projected == (graph.node(source).shape != graph.node(body).shape), name


def test_resnet_projections_are_torchvision_downsample():
    rows = {r.name: r for r in report_of("resnet50").rows}
    # torchvision's layerN.0.downsample: conv1x1(inplanes, 4c, stride) + BatchNorm2d(4c)
    for layer, (cin, cout, size) in {
        "layer1": (64, 256, 56),
        "layer2": (256, 512, 28),
        "layer3": (512, 1024, 14),
        "layer4": (1024, 2048, 7),
    }.items():
        row = rows[f"{layer}.0.residual.shortcut"]
        assert row.params == cin * cout + 2 * cout
        assert row.shape == (size, size, cout)
        assert row.macs == size * size * cin * cout


def test_zeropad_shortcuts_have_no_parameters():
    graph, report = compiled("resnet_zeropad")
    shortcuts = [r for r in report.rows if r.inserted]
    assert [graph.node(r.name).op for r in shortcuts] == [ZeroPad(32, (2, 2)), ZeroPad(64, (2, 2))]
    assert all(r.params == 0 for r in shortcuts)
    graph, _ = compiled("tiny_resnet")
    assert isinstance(graph.node("layer2.0.residual.shortcut").op, Project)


# --- 1x1 convolutions ------------------------------------------------------------------

LECTURE_SAVING = dict(direct_macs=120_422_400, bottleneck_macs=12_443_648)


def test_bottleneck_1x1_lecture_figures():
    report = report_of("bottleneck_1x1")
    macs = {r.name: r.macs for r in report.rows}
    assert macs["paths.direct.conv"] == 28 * 28 * 32 * 5 * 5 * 192 == 120_422_400
    assert macs["paths.bottleneck.reduce"] == 28 * 28 * 16 * 192 == 2_408_448
    assert macs["paths.bottleneck.conv"] == 28 * 28 * 32 * 5 * 5 * 16 == 10_035_200
    assert report.savings == (
        Saving("paths.bottleneck.reduce", "paths.bottleneck.conv", **LECTURE_SAVING),
    )
    assert shape_at(report, "paths.direct") == shape_at(report, "paths.bottleneck")
    assert report.to_json()["savings"] == [
        {"reduce": "paths.bottleneck.reduce", "conv": "paths.bottleneck.conv", **LECTURE_SAVING}
    ]


def test_inception_3a_module():
    report = report_of("inception_3a")
    assert shape_at(report, "input") == (28, 28, 192)
    assert report.params == 163_696
    assert (report.params - 368) // 1024 == 159  # table 1: 159K weights (K = 1024) + biases
    assert report.macs == 128_049_152  # table 1: 128M
    savings = {s.conv: s for s in report.savings}
    # the 5x5 branch is the lecture's bottleneck example
    assert savings["inception3a.b5x5.conv"] == Saving(
        "inception3a.b5x5.reduce", "inception3a.b5x5.conv", **LECTURE_SAVING
    )
    assert savings["inception3a.b3x3.conv"].direct_macs == 28 * 28 * 128 * 9 * 192


def test_googlenet_reports_a_saving_per_reduce():
    # each module has a 3x3 reduce and a 5x5 reduce; all of them shrink the channels
    assert len(report_of("googlenet").savings) == 2 * 9
    assert len(report_of("googlenet_bn").savings) == 2 * 9


# --- transfer learning -----------------------------------------------------------------


def test_transfer_resnet18_trains_only_the_new_head():
    base = report_of("resnet18")
    features = base.params - (512 * 1000 + 1000)
    assert features == 11_176_512
    report = report_of("transfer_resnet18", network="TransferResNet18")
    assert report.params == features + 512 * 5 + 5
    assert report.trainable == 512 * 5 + 5
    assert [r.name for r in report.rows if not r.frozen] == ["fc", "softmax"]
    assert report.macs == base.macs - 512 * 1000 + 512 * 5


def test_finetune_resnet18_trains_layer4_and_the_head():
    base = report_of("resnet18")
    report = report_of("transfer_resnet18", network="FineTuneResNet18")
    assert report.trainable == scope_params(base, "layer4") + 512 * 5 + 5 == 8_396_293
    trained = ("layer4.", "avgpool", "fc", "softmax")
    assert all(r.frozen != r.name.startswith(trained) for r in report.rows)


def test_tiny_resnet_is_tiny():
    report = report_of("tiny_resnet")
    assert report.params == 5_266
    assert shape_at(report, "fc") == (10,)
    assert math.prod(shape_at(report, "input")) == 32 * 32 * 3


# --- the command line ------------------------------------------------------------------


def test_cli_compile_resnet50(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ROOT)
    assert main(["compile", "specs/resnet50.arch"]) == 0
    out = capsys.readouterr().out
    assert "25,557,032" in out
    assert "4,089,184,256" in out
    assert "layer1.0.residual.shortcut" in out

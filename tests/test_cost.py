"""Memory and FLOPs for a batch (`archdsl.graph.cost`, `archdsl compile --batch`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from archdsl.cli.main import main
from archdsl.frontend import build_graph
from archdsl.graph.cost import estimate, fold_rows
from archdsl.graph.report import build_report

SPECS = Path(__file__).resolve().parents[1] / "specs"
LENET_PARAMS = 61_706
LENET_MACS = 416_520
C1_MACS = 117_600  # 28*28*6 outputs x 25 taps: the first layer needs no input gradient


@pytest.fixture(scope="module")
def lenet():
    return build_graph(SPECS / "lenet5.arch")


def test_lenet_training_counts_by_hand(lenet) -> None:
    cost = estimate(lenet, 8, train=True, optimizer="adam")
    assert cost.params_bytes == cost.gradient_bytes == LENET_PARAMS * 4
    assert cost.optimizer_bytes == 2 * LENET_PARAMS * 4
    assert estimate(lenet, 8, train=True, optimizer="sgd").optimizer_bytes == LENET_PARAMS * 4
    # kept for backward: tanh outputs (28x28x6, 10x10x16, 120, 84), the inputs of c3 (14x14x6)
    # and c5 (400); f6 and output read tanh outputs already kept; the batch is an argument.
    kept = 4704 + 1600 + 120 + 84 + 1176 + 400
    assert cost.activation_bytes == kept * 8 * 4
    assert cost.input_bytes == 32 * 32 * 8 * 4
    assert cost.forward_flops == 2 * LENET_MACS * 8
    assert cost.backward_flops == (2 * LENET_MACS + 2 * (LENET_MACS - C1_MACS)) * 8
    assert cost.flops == cost.forward_flops + cost.backward_flops
    assert cost.peak_bytes > cost.activation_bytes + cost.optimizer_bytes


def test_lenet_inference_live_peak(lenet) -> None:
    cost = estimate(lenet, 4)
    # c1's output is alive while tanh writes its own: the largest pair in the network.
    assert cost.activation_bytes == 2 * 4704 * 4 * 4
    assert cost.gradient_bytes == cost.optimizer_bytes == cost.backward_flops == 0
    assert cost.flops == 2 * LENET_MACS * 4
    assert estimate(lenet, 8).activation_bytes == 2 * cost.activation_bytes


def test_aux_heads_count_in_training_only() -> None:
    graph = build_graph(SPECS / "googlenet.arch")
    report = build_report(graph)
    train, infer = estimate(graph, 1, train=True), estimate(graph, 1)
    assert infer.params_bytes == report.inference_params * 4
    assert train.params_bytes == report.params * 4
    assert infer.forward_flops == 2 * report.macs


def test_frozen_layers_take_no_gradient_or_optimizer_state() -> None:
    graph = build_graph(SPECS / "transfer_resnet18.arch")
    report = build_report(graph)
    assert report.trainable < report.params
    cost = estimate(graph, 2, train=True)
    assert cost.gradient_bytes == report.trainable * 4
    assert cost.optimizer_bytes == 2 * report.trainable * 4
    # frozen backbone: no weight gradients there and no input gradients below the head
    assert cost.backward_flops < cost.forward_flops


def test_fold_rows_at_depth() -> None:
    report = build_report(build_graph(SPECS / "resnet50.arch"))
    folded = fold_rows(report.rows, 1)
    assert [r.name for r in folded] == [
        "input",
        "stem",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "avgpool",
        "fc",
    ]
    assert sum(r.params for r in folded) == report.params
    assert sum(r.macs for r in folded) == report.macs
    layer2 = folded[3]
    assert layer2.shape == (28, 28, 512) and layer2.op == "block"
    names = [r.name for r in fold_rows(report.rows, 2)]
    start = names.index("layer1.0")
    assert names[start : start + 4] == ["layer1.0", "layer1.1", "layer1.2", "layer2.0"]


def test_compile_batch_train_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["compile", str(SPECS / "lenet5.arch"), "--batch", "8", "--train", "--json"]
    assert main([*args, "--optimizer", "sgd"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cost"]["mode"] == "train" and data["cost"]["optimizer"] == "sgd"
    assert data["cost"]["bytes"]["optimizer_state"] == LENET_PARAMS * 4
    assert data["cost"]["flops"]["forward"] == 2 * LENET_MACS * 8


def test_compile_batch_table_and_depth(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(SPECS / "resnet50.arch"), "--batch", "2", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert "layer3" in out and "layer3.0" not in out
    assert "activations (live peak)" in out and "estimated peak" in out
    assert "GFLOPs forward" in out


def test_compile_rejects_a_bad_batch(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["compile", str(SPECS / "lenet5.arch"), "--batch", "0"])
    assert exit_.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err

"""`--cache-frozen`: the frozen base runs once, the head trains on its stored outputs."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from archdsl.backend.model import compile_graph
from archdsl.backend.weights import load_weights, save_weights
from archdsl.cli.main import main
from archdsl.frontend import build_graph, build_graph_text
from archdsl.train.cache import cache_features, frozen_boundary, split_frozen
from archdsl.train.config import ArchTrainError
from archdsl.train.data import load_data

SPEC = "specs/transfer_tiny_resnet.arch"
PICTURES = Path(__file__).parent / "fixtures" / "pictures"


def test_split_at_the_frozen_boundary() -> None:
    graph = build_graph(SPEC)
    base, head = split_frozen(graph)
    assert frozen_boundary(graph) == "avgpool" == base.output == head.inputs[0]
    assert set(head.order()) == {"avgpool", "fc"}
    assert set(base.order()) | {"fc"} == set(graph.order())
    assert head.node("avgpool").op.name == "input" and head.node("avgpool").shape == (16,)


def test_networks_that_cannot_be_cached() -> None:
    with pytest.raises(ArchTrainError, match="this network has none"):
        frozen_boundary(build_graph("specs/tiny_resnet.arch"))
    two = build_graph_text(
        'import "specs/tiny_resnet.arch"\n'
        "network Two {\n use TinyResNet upto avgpool frozen\n"
        " add {\n  branch { dense 4 as a }\n  branch { dense 4 as b }\n }\n}"
    )
    assert frozen_boundary(two) == "avgpool"  # two trainable readers, one frozen tensor


def test_cached_features_are_the_base_outputs(tmp_path) -> None:
    graph = build_graph(SPEC)
    base, _ = split_frozen(graph)
    params, state = compile_graph(base).init(jax.random.key(0))
    data = load_data(PICTURES, (32, 32, 3), 2)
    features = cache_features(base, params, state, data.test, tmp_path / "f.npy", batch_size=3)
    want = compile_graph(base).apply(params, state, data.test.x[0 : len(data.test)])[0]
    assert isinstance(features, np.memmap) and features.shape == (8, 16)
    np.testing.assert_allclose(features, np.asarray(want), rtol=1e-6)


def run(tmp_path: Path, capsys, *extra: str) -> tuple[str, list[float]]:
    code = main(
        ["train", SPEC, "--data", str(PICTURES), "--epochs", "3", "--batch-size", "8",
         "--lr", "0.1", "--checkpoint-dir", str(tmp_path / "ck"), *extra]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    losses = [
        float(line.split("loss ")[1].split()[0])
        for line in out.splitlines()
        if line.startswith("epoch ")
    ]
    return out, losses


def test_training_on_cached_features_is_training_the_whole_network(tmp_path, capsys) -> None:
    init = tmp_path / "init.safetensors"
    save_weights(init, *compile_graph(build_graph(SPEC)).init(jax.random.key(5)))
    _, plain = run(tmp_path / "plain", capsys, "--init", str(init))
    out, cached = run(tmp_path / "cached", capsys, "--init", str(init), "--cache-frozen")
    assert "cache    `avgpool` (16) of 32 + 8 examples computed in" in out
    np.testing.assert_allclose(cached, plain, rtol=1e-4)
    params, _ = load_weights(tmp_path / "cached" / "ck" / "weights.safetensors")
    assert {"conv1", "layer2.0.residual.shortcut", "fc"} <= set(params)
    out, again = run(tmp_path / "cached", capsys, "--init", str(init), "--cache-frozen")
    assert "examples reused" in out and again == cached


def test_cache_and_augment_do_not_mix(tmp_path, capsys) -> None:
    code = main(
        ["train", SPEC, "--data", str(PICTURES), "--cache-frozen", "--augment", "--no-checkpoints"]
    )
    assert code == 1
    assert "`--augment` changes their input every epoch" in capsys.readouterr().err

"""Transfer learning: weights matched by name, frozen layers untouched by training."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from archdsl.backend.model import compile_graph
from archdsl.backend.weights import ArchWeightsError, flatten
from archdsl.cli import main
from archdsl.frontend import build_graph
from archdsl.train.checkpoint import load_any_weights
from archdsl.train.data import Split, load_data
from archdsl.train.loop import TrainConfig, make_optimizer, partition, train, training_graph
from archdsl.train.transfer import MatchReport, Mismatch, check_match, match_weights

ROOT = Path(__file__).resolve().parents[1]

SPECS = """
network Base(classes = 10) {
    input 8x8x1
    conv 4 3x3 same bias = false as conv -> batchnorm as bn -> relu
    maxpool 2x2 as pool
    flatten as features
    dense classes as fc -> softmax
}

# The base's layers up to `features`, frozen, and a new head.
network Tuned(classes = 10) {
    use Base(classes) upto features frozen
    dense 16 as hidden -> relu
    dense classes as head -> softmax
}

# The same layers, trainable, with a classifier of another size under the old name.
network Resized(classes = 5) {
    use Base(classes)
}
"""


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("specs") / "transfer.arch"
    path.write_text(SPECS)
    return path


@pytest.fixture(scope="module")
def data() -> Split:
    full = load_data("digits", (8, 8, 1), 10)
    return Split(full.train.take(np.arange(256)), full.test.take(np.arange(64)))


@pytest.fixture(scope="module")
def base_weights(spec: Path, data: Split, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("base")
    base = build_graph(spec, network="Base")
    result = train(base, data, TrainConfig(epochs=1, batch_size=64, seed=1), checkpoint_dir=folder)
    assert result.weights is not None
    return result.weights


@pytest.mark.slow
def test_frozen_layers_stay_bit_identical_and_the_head_learns(spec, data, base_weights):
    graph = build_graph(spec, network="Tuned")
    frozen = {name for name, node in graph.items() if node.frozen}
    assert frozen == {"input", "conv", "bn", "relu", "pool", "features"}
    base_params, base_state = load_any_weights(base_weights)
    model = compile_graph(training_graph(graph))
    initial, _ = model.init(jax.random.fold_in(jax.random.key(0), 0))  # as `train` does

    result = train(
        graph,
        data,
        TrainConfig(epochs=2, batch_size=64, lr=0.01, seed=0),
        init=(base_params, base_state),
        init_name="base.safetensors",
    )
    assert result.match is not None and result.match.ok
    for node in ("conv", "bn"):
        for leaf, loaded in base_params[node].items():
            assert np.array_equal(result.params[node][leaf], loaded), f"{node}.{leaf}"
    for leaf in ("mean", "var"):  # frozen batch norm keeps the base's statistics
        assert np.array_equal(result.state["bn"][leaf], base_state["bn"][leaf]), leaf
    for node in ("hidden", "head"):
        assert not np.array_equal(result.params[node]["kernel"], initial[node]["kernel"])
    assert result.history[-1].loss < result.history[0].loss


def test_frozen_layers_have_no_optimizer_state(spec) -> None:
    graph = build_graph(spec, network="Tuned")
    model = compile_graph(training_graph(graph))
    params, _ = model.init(jax.random.key(0))
    trainable, frozen = partition(params, model.trainable(params))
    assert set(frozen) == {"conv", "bn"} and set(trainable) == {"hidden", "head"}
    opt_state = make_optimizer(TrainConfig(optimizer="adam"), 10).init(trainable)
    floats = [x for x in jax.tree.leaves(opt_state) if x.dtype == np.float32]
    count = sum(x.size for x in jax.tree.leaves(trainable))
    assert sum(x.size for x in floats) == 2 * count  # Adam's two moments, trainable only


def test_match_report_of_a_cut_network(spec, base_weights) -> None:
    graph = build_graph(spec, network="Tuned")
    model = compile_graph(training_graph(graph))
    params, state = model.init(jax.random.key(0))
    new_params, new_state, report = match_weights(
        params, state, *load_any_weights(base_weights), frozen={"conv", "bn"}
    )
    assert set(report.loaded) == {"conv.kernel", "bn.scale", "bn.bias", "bn.mean", "bn.var"}
    assert set(report.initialised) == {"hidden.kernel", "hidden.bias", "head.kernel", "head.bias"}
    assert report.ignored == ("fc.bias", "fc.kernel")
    assert report.mismatched == () and report.frozen_initialised == () and report.ok
    assert report.summary() == "5 loaded, 4 newly initialised, 2 ignored, 0 shape mismatches"
    assert np.array_equal(new_params["head"]["kernel"], params["head"]["kernel"])
    assert new_params["conv"]["kernel"].dtype == params["conv"]["kernel"].dtype
    assert set(flatten(new_state)) == set(flatten(state))


def test_match_report_shape_mismatch(spec, base_weights) -> None:
    graph = build_graph(spec, network="Resized")
    model = compile_graph(training_graph(graph))
    params, state = model.init(jax.random.key(0))
    _, _, report = match_weights(params, state, *load_any_weights(base_weights))
    assert report.mismatched == (
        Mismatch("fc.bias", (5,), (10,)),
        Mismatch("fc.kernel", (64, 5), (64, 10)),
    )
    assert report.initialised == () and report.ignored == ()
    assert "fc.kernel: 64x10 in the file, the network needs 64x5" in "\n".join(report.lines())


def test_match_report_frozen_but_missing() -> None:
    params = {
        "conv": {"kernel": np.zeros((3, 3, 1, 2), np.float32)},
        "fc": {"kernel": np.zeros((2, 2), np.float32)},
    }
    base = {"fc": {"kernel": np.ones((2, 2), np.float32)}, "other": {"bias": np.ones(3)}}
    out, _, report = match_weights(params, {}, base, {}, frozen={"conv"})
    assert report == MatchReport(
        loaded=("fc.kernel",),
        initialised=("conv.kernel",),
        ignored=("other.bias",),
        mismatched=(),
        frozen_initialised=("conv.kernel",),
    )
    assert not report.ok
    assert any("frozen but not loaded" in line for line in report.lines())
    np.testing.assert_array_equal(out["fc"]["kernel"], 1.0)


def test_nothing_matches_is_an_error() -> None:
    params = {"conv": {"kernel": np.zeros((1,), np.float32)}}
    _, _, report = match_weights(params, {}, {"dense": {"kernel": np.ones(1)}}, {})
    with pytest.raises(ArchWeightsError, match=r"no tensor of `w\.safetensors` matches"):
        check_match(report, "w.safetensors", "Net")


@pytest.mark.slow
def test_train_command_init_prints_the_report(spec, base_weights, tmp_path, capsys) -> None:
    code = main(
        [
            "train",
            str(spec),
            "--network",
            "Tuned",
            "--data",
            "digits",
            "--epochs",
            "1",
            "--batch-size",
            "256",
            "--init",
            str(base_weights),
            "--checkpoint-dir",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "5 loaded, 4 newly initialised, 2 ignored, 0 shape mismatches" in out
    assert "(44 frozen)" in out


def test_transfer_resnet18_spec_freezes_the_base() -> None:
    graph = build_graph(ROOT / "specs" / "transfer_resnet18.arch", network="TransferResNet18")
    trainable = {name for name, node in graph.items() if not node.frozen}
    assert trainable == {"fc", "softmax"}
    base = build_graph(ROOT / "specs" / "resnet18.arch")
    shared = {n for n in graph.order() if n in base}
    assert "layer4.1.conv2" in shared and "fc" in shared  # names kept, so weights match

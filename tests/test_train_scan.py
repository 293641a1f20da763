"""`archdsl train` with the scanned lowering: it carries packed trees, and nothing a user
sees changes (losses, weights, file names, checkpoints) against `--no-scan`.

The network has two runs of three identical residual blocks with batch norm, so the
running state is threaded through the loop; the frozen variant freezes the stem and
the first run. Checkpoints cross between the two lowerings both ways.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from archdsl.backend.model import compile_graph
from archdsl.backend.weights import load_weights
from archdsl.cli import main
from archdsl.frontend import build_graph_text
from archdsl.train import loop
from archdsl.train.checkpoint import CHECKPOINT_NAME, load_checkpoint
from archdsl.train.data import Split, load_data
from archdsl.train.loop import TrainConfig, train, training_graph
from archdsl.train.sharding import leaf_spec

ROOT = Path(__file__).resolve().parents[1]

SPEC = """
block blk(c) {{
    residual {{ conv c 3x3 same bias = false as conv -> batchnorm as bn -> relu }}
}}
network Deep(classes = 10) {{
    input 8x8x1
    {frozen}{{
        conv 16 3x3 same as stem
        repeat 3 {{ blk(16) }} as early
    }}
    repeat 3 {{ blk(16) }} as late
    globalavgpool -> dropout 0.1 -> dense classes as fc
}}
"""


def _graph(frozen: bool = False):
    return build_graph_text(SPEC.format(frozen="frozen " if frozen else ""), "deep.arch")


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    """The stopped and resumed runs compile the reference runs' programs: keep them."""
    from jax.experimental.compilation_cache import compilation_cache as cc

    names = (
        "jax_compilation_cache_dir",
        "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes",
    )
    before = {name: getattr(jax.config, name) for name in names}
    jax.config.update(names[0], str(tmp_path_factory.mktemp("xla-cache")))
    jax.config.update(names[1], 0.0)
    jax.config.update(names[2], 0)
    cc.reset_cache()
    yield
    for name, value in before.items():
        jax.config.update(name, value)
    cc.reset_cache()


@pytest.fixture(scope="module")
def data() -> Split:
    digits = load_data("digits", (8, 8, 1), 10)
    return Split(digits.train.take(np.arange(128)), digits.test.take(np.arange(48)))


def _config(scan: bool, optimizer: str = "adam") -> TrainConfig:
    # Weight decay: a stacked bias has rank 2 and must still be spared.
    return TrainConfig(epochs=2, batch_size=32, weight_decay=1e-2, scan=scan, optimizer=optimizer)


def _losses(folder: Path) -> list[float]:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["kind"] == "step"]


def _close(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for node in a:
        assert sorted(a[node]) == sorted(b[node]), node
        for leaf in a[node]:
            np.testing.assert_allclose(
                a[node][leaf], b[node][leaf], rtol=1e-5, atol=1e-5, err_msg=f"{node}.{leaf}"
            )


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data) -> dict:
    """Uninterrupted runs, scanned and unrolled, and the top-level keys each step got."""
    out = {}
    carried: dict[bool, set[str]] = {}
    real = loop.make_train_step

    def spy(model, *args, **kwargs):
        step = real(model, *args, **kwargs)

        def wrapped(trainable, *rest):
            carried.setdefault(bool(model.runs), set()).update(trainable)
            return step(trainable, *rest)

        return wrapped

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loop, "make_train_step", spy)
        for scan in (True, False):
            folder = tmp_path_factory.mktemp(f"scan{int(scan)}")
            out[scan] = (folder, train(_graph(), data, _config(scan), checkpoint_dir=folder))
    out["carried"] = carried
    return out


@pytest.mark.slow
def test_a_scanned_run_equals_the_unrolled_one(reference) -> None:
    (scanned, a), (unrolled, b) = reference[True], reference[False]
    # The scanned step carried the runs packed; the unrolled one per layer.
    assert {"early.0..early.2", "late.0..late.2"} <= reference["carried"][True]
    assert not {"early.1.conv", "late.2.bn"} & reference["carried"][True]
    assert {"early.1.conv", "late.2.bn"} <= reference["carried"][False]

    assert len(_losses(scanned)) == 8
    np.testing.assert_allclose(_losses(scanned), _losses(unrolled), rtol=1e-5)
    _close(a.params, b.params)
    _close(a.state, b.state)
    assert "late.2.bn" in a.state and "late.2.conv" in a.params

    # Weights files and checkpoints: per-layer names, the same in both.
    pa, sa = load_weights(scanned / "weights.safetensors")
    pb, sb = load_weights(unrolled / "weights.safetensors")
    _close(pa, pb)
    _close(sa, sb)
    assert "early.1.conv" in pa and "early.0..early.2" not in pa
    ca, cb = (load_checkpoint(f / CHECKPOINT_NAME) for f in (scanned, unrolled))
    _close(ca.params, cb.params)
    assert ca.optimizer_paths == cb.optimizer_paths
    assert any("['late.1.conv']['kernel']" in p for p in ca.optimizer_paths)
    for x, y in zip(ca.optimizer, cb.optimizer, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_a_frozen_prefix_trains_alike_and_stays_put(tmp_path: Path, data) -> None:
    graph = _graph(frozen=True)
    runs = {}
    for scan in (True, False):
        folder = tmp_path / f"scan{int(scan)}"
        runs[scan] = train(graph, data, _config(scan, "sgd"), checkpoint_dir=folder)
    np.testing.assert_allclose(_losses(tmp_path / "scan1"), _losses(tmp_path / "scan0"), rtol=1e-5)
    _close(runs[True].params, runs[False].params)
    _close(runs[True].state, runs[False].state)
    # The frozen run has no optimizer state, in either lowering.
    saved = load_checkpoint(tmp_path / "scan1" / CHECKPOINT_NAME)
    other = load_checkpoint(tmp_path / "scan0" / CHECKPOINT_NAME)
    assert saved.optimizer_paths == other.optimizer_paths
    assert not any("early" in p or "stem" in p for p in saved.optimizer_paths)
    assert any("late.0.conv" in p for p in saved.optimizer_paths)
    # Frozen layers, and their batch-norm statistics, are where initialisation put them.
    init_params, init_state = compile_graph(training_graph(graph)).init(
        jax.random.fold_in(jax.random.key(0), 0)
    )
    for tree, start, name in (
        (runs[True].params, init_params, "early.1.conv"),
        (runs[True].params, init_params, "stem"),
        (runs[True].state, init_state, "early.2.bn"),
    ):
        _close({name: tree[name]}, {name: start[name]})


@pytest.mark.slow
def test_checkpoints_cross_between_scan_and_no_scan(tmp_path: Path, data, reference) -> None:
    npz = tmp_path / "data.npz"
    np.savez(npz, x=data.train.x, y=data.train.y, x_test=data.test.x, y_test=data.test.y)
    spec = tmp_path / "deep.arch"
    spec.write_text(SPEC.format(frozen=""))
    for scan, stop_at in ((True, 3), (False, 5)):
        folder = tmp_path / f"from{int(scan)}"
        stopped = train(
            _graph(),
            data,
            _config(scan),
            checkpoint_dir=folder,
            on_step=lambda step, stop_at=stop_at: step == stop_at,
        )
        assert stopped.interrupted and stopped.step == stop_at
        # Resumed with the other lowering, from the command line.
        flag = "--no-scan" if scan else "--scan"
        command = ["train", str(spec), "--data", str(npz), "--checkpoint-dir", str(folder)]
        assert main([*command, "--resume", flag]) == 0
        final = load_checkpoint(folder / CHECKPOINT_NAME)
        assert final.step == 8
        # Both resumed runs end where the uninterrupted scanned one does.
        _close(final.params, load_checkpoint(reference[True][0] / CHECKPOINT_NAME).params)
        np.testing.assert_allclose(_losses(folder), _losses(reference[True][0]), rtol=1e-5)


def test_the_rule_never_splits_the_scan_axis() -> None:
    # Unstacked, axis 0 (the largest) would be split; stacked, the rule sees one block.
    assert leaf_spec((36, 32, 33), 2) == PartitionSpec("model", None, None)
    assert leaf_spec((36, 32, 33), 2, stacked=True) == PartitionSpec(None, "model", None)
    # A block under the threshold stays whole, however many blocks are stacked.
    assert leaf_spec((36, 3, 3, 8, 8), 2) == PartitionSpec("model", None, None, None, None)
    assert leaf_spec((36, 3, 3, 8, 8), 2, stacked=True) == PartitionSpec()
    assert leaf_spec((4, 3, 3, 16, 64), 2, stacked=True) == PartitionSpec(
        None, None, None, None, "model"
    )
    assert leaf_spec((36, 16), 2, stacked=True) == PartitionSpec()


def test_scan_is_the_default_and_no_scan_turns_it_off() -> None:
    from archdsl.cli.main import build_parser
    from archdsl.cli.train import resolve_config

    parser = build_parser(("train",))

    def config(*flags: str) -> TrainConfig:
        return resolve_config(parser.parse_args(["train", "x.arch", "--data", "d", *flags]), None)

    assert config().scan and TrainConfig().scan
    assert not config("--no-scan").scan
    assert config("--scan").scan


# --shard-params on 4 devices, scanned -------------------------------------------------------
SHARDED = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from archdsl.frontend import build_graph_text
    from archdsl.train.data import Split, load_data
    from archdsl.train import loop
    from archdsl.train.loop import TrainConfig, train, training_graph

    assert jax.device_count() == 4, jax.devices()
    graph = build_graph_text(sys.argv[1], "deep.arch")
    data = load_data("digits", (8, 8, 1), 10)
    small = Split(data.train.take(np.arange(128)), data.test.take(np.arange(48)))
    specs = {}
    real = loop.make_train_step

    def spy(model, optimizer, aux, shardings):
        # The placements the step is compiled for: the trainable tree's.
        for path, s in jax.tree_util.tree_flatten_with_path(shardings[0])[0]:
            specs[jax.tree_util.keystr(path)] = [str(a) for a in s.spec]
        return real(model, optimizer, aux, shardings)

    loop.make_train_step = spy
    report = {}
    for name, devices, shard, scan in (
        ("one", 1, False, True), ("scan", 4, True, True), ("unrolled", 4, True, False)
    ):
        specs.clear()
        config = TrainConfig(epochs=1, batch_size=32, devices=devices, shard_params=shard,
                             model_axis=2 if shard else None, weight_decay=1e-2, scan=scan)
        run = train(graph, small, config, checkpoint_dir=f"{sys.argv[2]}/{name}")
        steps = [json.loads(l) for l in open(f"{sys.argv[2]}/{name}/metrics.jsonl")]
        report[name] = {
            "losses": [s["loss"] for s in steps if s["kind"] == "step"],
            "memory": run.memory,
            "specs": dict(specs),
            "params": {f"{n}.{k}": np.asarray(v).tolist() for n, leaves in run.params.items()
                       for k, v in leaves.items()},
        }
    # The rule on a packed tree and on an optimizer state around one: a run of 36
    # blocks would be split on its scan axis (the largest) if the rule did not know it.
    from jax import ShapeDtypeStruct as Leaf
    from archdsl.train.parallel import make_mesh
    from archdsl.train.sharding import Layout
    tree = {"r.0..r.35": {"conv": {"kernel": Leaf((36, 32, 33), np.float32)}},
            "fc": {"kernel": Leaf((36, 32, 33), np.float32)}}
    layout = Layout(make_mesh(4, 2), True, frozenset({"r.0..r.35"}))
    report["layout"] = [
        [str(a) for a in s.spec] for s in jax.tree.leaves(layout.of(((tree,), {"mu": tree})))
    ]
    print(json.dumps(report))
""")


@pytest.mark.slow
def test_sharded_scanned_training_equals_unrolled(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        JAX_PLATFORMS="cpu",
    )
    done = subprocess.run(
        [sys.executable, "-c", SHARDED, SPEC.format(frozen=""), str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    one, scan, unrolled = report["one"], report["scan"], report["unrolled"]
    assert len(one["losses"]) == 4
    for other in (scan, unrolled):
        np.testing.assert_allclose(other["losses"], one["losses"], rtol=1e-5)
        assert other["params"].keys() == one["params"].keys()
        for key, value in one["params"].items():
            np.testing.assert_allclose(other["params"][key], value, rtol=1e-5, atol=1e-5)
    # Each block is placed as unrolled: the same bytes on each device, and a stacked
    # kernel is split on a block axis, never on the scan axis.
    assert scan["memory"] == unrolled["memory"]
    assert scan["memory"]["params"][0] < scan["memory"]["params"][1]
    stacked = {p: s for p, s in scan["specs"].items() if p.startswith("['late.0..late.2']")}
    kernel = stacked["['late.0..late.2']['conv']['kernel']"]
    assert kernel == ["None", "None", "None", "model", "None"]
    assert unrolled["specs"]["['late.1.conv']['kernel']"] == ["None", "None", "model", "None"]
    assert all(s == [] or s[0] == "None" for s in stacked.values()), stacked
    assert report["layout"] == [["model", "None", "None"], ["None", "model", "None"]] * 2

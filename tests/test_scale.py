"""Beyond one device: sharded parameters, several processes, checkpoints across them.

JAX fixes its device count (and its processes) when it starts, so the runs on several
devices start subprocesses with `XLA_FLAGS=--xla_force_host_platform_device_count=N`;
the multi-process check starts two `archdsl train` processes of 2 devices each, joined
over a local port with gloo, and compares them with one process of 4 devices.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from jax.sharding import PartitionSpec

from archdsl.cli import main
from archdsl.train.checkpoint import load_checkpoint
from archdsl.train.config import ArchTrainError, TrainConfig
from archdsl.train.data import load_data
from archdsl.train.distributed import ArchDistributedError, Cluster, host_port, initialize
from archdsl.train.parallel import ArchDeviceError, make_mesh
from archdsl.train.sharding import MIN_SHARD_ELEMENTS, leaf_spec

ROOT = Path(__file__).resolve().parents[1]

NET = """
network Net(classes = 10) {
    input 8x8x1
    conv 16 3x3 same bias = false as conv -> batchnorm as bn -> relu
    flatten -> dropout 0.1
    dense 64 as hidden -> relu
    dense classes as fc -> softmax
}
"""

# `blocks` is a run of three identical blocks, which `train` scans by default: the
# processes carry it packed (stacked), gather it and write it per layer.
NET_WITH_RUN = NET.replace(
    "dense 64 as hidden -> relu",
    "dense 64 as hidden -> relu\n    repeat 3 { residual { dense 64 as lin -> relu } } as blocks",
)


def _env(devices: int, cache: Path) -> dict[str, str]:
    return dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=str(cache),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )


# the sharding rule --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "parts", "spec"),
    [
        ((3, 3, 16, 64), 2, PartitionSpec(None, None, None, "model")),  # the largest axis
        ((1024, 64), 4, PartitionSpec("model", None)),
        ((64, 64), 2, PartitionSpec("model", None)),  # a tie: the first
        ((1025, 3), 2, PartitionSpec()),  # no axis divides
        ((1026, 3), 4, PartitionSpec()),
        ((1026, 4), 4, PartitionSpec(None, "model")),  # the largest that divides
        ((64,), 2, PartitionSpec()),  # too small to be worth it
        ((), 2, PartitionSpec()),
        ((4096,), 1, PartitionSpec()),  # no model axis
    ],
)
def test_leaf_spec(shape: tuple[int, ...], parts: int, spec: PartitionSpec) -> None:
    assert leaf_spec(shape, parts) == spec


def test_leaves_just_under_the_threshold_are_whole() -> None:
    assert leaf_spec((MIN_SHARD_ELEMENTS // 2, 2), 2) == PartitionSpec("model", None)
    assert leaf_spec((MIN_SHARD_ELEMENTS // 2 - 1, 2), 2) == PartitionSpec()


def test_model_axis_needs_shard_params_and_must_divide() -> None:
    with pytest.raises(ArchTrainError, match="does nothing without `--shard-params`"):
        TrainConfig(model_axis=2).check()
    assert TrainConfig(devices=4, shard_params=True).model_parts == 4
    assert TrainConfig(devices=4, shard_params=True, model_axis=2).model_parts == 2
    assert TrainConfig(devices=4).model_parts == 1
    with pytest.raises(ArchDeviceError, match="`--model-axis 2` does not divide `--devices 1`"):
        make_mesh(1, 2)


# process flags ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cluster", "message"),
    [
        (Cluster(coordinator="h:1", num_processes=2), "needs `--process-id` as well"),
        (Cluster(num_processes=2, process_id=0), "needs `--coordinator` as well"),
        (Cluster("h:1", 2, 2), "`--process-id 2` is out of range for `--num-processes 2`"),
        (Cluster("h:1", 2, -1), "out of range"),
        (Cluster("h:1", 0, 0), "`--num-processes` must be at least 1, got 0"),
        (Cluster("localhost", 2, 0), "`--coordinator localhost` is not HOST:PORT"),
        (Cluster("h:99999", 2, 0), "is not HOST:PORT"),
        (Cluster("h:1", 2, 0, timeout=0), "`--coordinator-timeout` must be at least 1"),
    ],
)
def test_bad_process_flags(cluster: Cluster, message: str) -> None:
    with pytest.raises(ArchDistributedError, match=message):
        cluster.check()


def test_host_port() -> None:
    assert host_port("10.0.0.1:1234") == ("10.0.0.1", 1234)
    assert host_port("[::1]:80") == ("::1", 80)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_an_unreachable_coordinator_is_a_message_not_a_hang() -> None:
    # Process 1 waits for process 0's port before JAX (which would abort) connects.
    cluster = Cluster(f"localhost:{_free_port()}", 2, 1, timeout=1)
    tick = time.monotonic()
    with pytest.raises(ArchDistributedError, match="cannot reach the coordinator") as info:
        initialize(cluster)
    assert time.monotonic() - tick < 10
    assert "--coordinator-timeout" in str(info.value)


def test_distributed_with_no_cluster_says_so(tmp_path: Path) -> None:
    spec = tmp_path / "net.arch"
    spec.write_text(NET)
    env = {k: v for k, v in _env(1, tmp_path).items() if not k.startswith(("SLURM", "OMPI"))}
    command = [sys.executable, "-m", "archdsl", "train", str(spec), "--data", "digits"]
    done = subprocess.run(
        [*command, "--distributed", "--no-checkpoints"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "`--distributed` found no cluster to join" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_rejects_bad_process_flags(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = tmp_path / "net.arch"
    spec.write_text(NET)
    code = main(
        [
            *("train", str(spec), "--data", "digits", "--coordinator", "localhost:1"),
            *("--num-processes", "2", "--process-id", "5"),
        ]
    )
    assert code == 1
    assert "`--process-id 5` is out of range for `--num-processes 2`" in capsys.readouterr().err


# --shard-params on 4 devices ----------------------------------------------------------------
SHARDED = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from pathlib import Path
    from archdsl.frontend import build_graph_text
    from archdsl.train.data import Split, load_data
    from archdsl.train.loop import TrainConfig, make_optimizer, train
    from archdsl.train.parallel import make_mesh
    from archdsl.train.sharding import Layout, device_bytes

    assert jax.device_count() == 4, jax.devices()
    graph = build_graph_text(sys.argv[1], "net.arch")
    data = load_data("digits", (8, 8, 1), 10)
    small = Split(data.train.take(np.arange(256)), data.test.take(np.arange(100)))
    out = Path(sys.argv[2])
    report = {}
    for name, devices, shard in (("one", 1, False), ("m2", 4, True)):
        config = TrainConfig(epochs=1, batch_size=32, devices=devices, shard_params=shard,
                             model_axis=2 if shard else None, weight_decay=1e-4)
        run = train(graph, small, config, checkpoint_dir=out / name)
        steps = [json.loads(l) for l in (out / name / "metrics.jsonl").read_text().splitlines()]
        report[name] = {
            "losses": [s["loss"] for s in steps if s["kind"] == "step"],
            "test_loss": run.history[-1].test_loss,
            "memory": run.memory,
            "params": {f"{n}.{k}": (np.shape(v), np.asarray(v).dtype.itemsize)
                       for n, leaves in run.params.items() for k, v in leaves.items()},
        }
        np.savez(out / f"{name}.npz", **{f"{n}.{k}": v for n, leaves in run.params.items()
                                          for k, v in leaves.items()})
    # All 4 devices on the model axis (the default): the placement alone.
    layout = Layout(make_mesh(4, 4), shard=True)
    params = layout.place(run.params)
    optimizer = make_optimizer(config, 8)
    shapes = jax.eval_shape(optimizer.init, params)
    state = jax.jit(optimizer.init, out_shardings=layout.of(shapes))(params)
    report["m4"] = {"memory": {"params": device_bytes(params), "optimizer": device_bytes(state)}}
    print(json.dumps(report))
""")


def _expected_bytes(leaves: dict[str, tuple[list[int], int]], parts: int) -> tuple[int, int]:
    """Bytes on one device by the documented rule: a leaf of at least 1024 elements with an
    axis that `parts` divides is split `parts` ways, anything else is whole."""
    held = total = 0
    for shape, itemsize in leaves.values():
        size = int(np.prod(shape)) * itemsize
        total += size
        split = int(np.prod(shape)) >= 1024 and any(d % parts == 0 for d in shape)
        held += size // parts if split else size
    return held, total


@pytest.mark.slow
def test_sharded_parameters_train_as_unsharded(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SHARDED, NET, str(tmp_path)],
        cwd=ROOT,
        env=_env(4, tmp_path / "cache"),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    one = report["one"]
    assert len(one["losses"]) == 8
    m2 = report["m2"]
    np.testing.assert_allclose(m2["losses"], one["losses"], rtol=1e-5)
    np.testing.assert_allclose(m2["test_loss"], one["test_loss"], rtol=1e-5)
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "m2.npz")
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)

    leaves = one["params"]
    total = sum(int(np.prod(s)) * i for s, i in leaves.values())
    assert tuple(one["memory"]["params"]) == (total, total)  # one device holds everything
    for name, parts in (("m2", 2), ("m4", 4)):
        held, whole = report[name]["memory"]["params"]
        assert (held, whole) == _expected_bytes(leaves, parts)
        # The dense kernels dominate: each device holds little more than its 1/parts.
        assert whole / parts <= held < whole / parts * 1.1, (held, whole)
        # Adam's two moments are split like the parameters they follow.
        opt_held, opt_whole = report[name]["memory"]["optimizer"]
        assert opt_whole / parts <= opt_held < opt_whole / parts * 1.1, (opt_held, opt_whole)


# two processes of two devices = one process of four ----------------------------------------
def _train(spec: Path, data: Path, folder: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "archdsl",
        "train",
        str(spec),
        "--data",
        str(data),
        "--batch-size",
        "32",
        "--schedule",
        "constant",
        "--optimizer",
        "sgd",
        "--checkpoint-dir",
        str(folder),
        *extra,
    ]


def _run(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _steps(folder: Path) -> list[dict]:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "step"]


def _close(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for node in a:
        assert set(a[node]) == set(b[node])
        for leaf in a[node]:
            np.testing.assert_allclose(
                a[node][leaf], b[node][leaf], rtol=1e-5, atol=1e-5, err_msg=f"{node}.{leaf}"
            )


@pytest.mark.slow
def test_two_processes_equal_one_and_resume_elsewhere(tmp_path: Path) -> None:
    spec = tmp_path / "net.arch"
    spec.write_text(NET_WITH_RUN)
    digits = load_data("digits", (8, 8, 1), 10)
    data = tmp_path / "data.npz"
    np.savez(
        data,
        x=digits.train.x[:256],
        y=digits.train.y[:256],
        x_test=digits.test.x[:100],
        y_test=digits.test.y[:100],
    )
    cache = tmp_path / "cache"

    # The reference: one process, 4 devices, 2 epochs straight through; --keep-best 2
    # keeps both epochs' checkpoints.
    ref = tmp_path / "ref"
    _run(
        _train(spec, data, ref, "--epochs", "2", "--devices", "4", "--keep-best", "2"),
        _env(4, cache),
    )

    # Two processes of 2 devices, one epoch. Process 1 is given another folder: it must
    # write nothing there.
    port = _free_port()
    procs = []
    for rank, folder in ((0, tmp_path / "multi"), (1, tmp_path / "multi1")):
        command = _train(spec, data, folder, "--epochs", "1")
        command += ["--coordinator", f"localhost:{port}", "--num-processes", "2"]
        command += ["--process-id", str(rank), "--coordinator-timeout", "60"]
        procs.append(
            subprocess.Popen(
                command,
                cwd=ROOT,
                env=_env(2, cache),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=600)
            outputs.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for code, out, err in outputs:
        assert code == 0, out + err[-3000:]
    assert "4 devices in 2 processes" in outputs[0][1]
    # Only process 0 prints (gloo's own C++ lines aside).
    assert [line for line in outputs[1][1].splitlines() if not line.startswith("[Gloo]")] == []
    assert not (tmp_path / "multi1").exists()

    reference = _steps(ref)
    multi = _steps(tmp_path / "multi")
    assert [s["step"] for s in multi] == list(range(1, 9))  # each step logged once
    np.testing.assert_allclose(
        [s["loss"] for s in multi], [s["loss"] for s in reference[:8]], rtol=1e-5
    )
    after_one = load_checkpoint(ref / "best-epoch001.safetensors")
    saved = load_checkpoint(tmp_path / "multi" / "checkpoint.safetensors")
    assert (saved.step, saved.epoch, saved.config["devices"]) == (8, 1, 4)
    assert "blocks.1.lin" in saved.params  # gathered packed, written per layer
    _close(saved.params, after_one.params)
    _close(saved.state, after_one.state)
    for a, b in zip(saved.optimizer, after_one.optimizer, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)

    # Resumed in one process of 2 devices, with the parameters sharded: the second epoch
    # is the reference's second epoch.
    resumed = tmp_path / "resumed"
    command = _train(spec, data, resumed, "--epochs", "2", "--devices", "2", "--shard-params")
    out = _run([*command, "--resume", str(tmp_path / "multi")], _env(2, cache))
    assert "resuming from" in out and "params sharded 2 ways" in out
    np.testing.assert_allclose(
        [s["loss"] for s in _steps(resumed)], [s["loss"] for s in reference[8:]], rtol=1e-5
    )
    final = load_checkpoint(resumed / "checkpoint.safetensors")
    _close(final.params, load_checkpoint(ref / "checkpoint.safetensors").params)


def test_a_resume_may_turn_sharding_off_or_on() -> None:
    from archdsl.cli.main import build_parser
    from archdsl.cli.train import resolve_config
    from archdsl.train.checkpoint import Checkpoint

    saved = Checkpoint(
        {},
        {},
        [],
        [],
        np.zeros(2, np.uint32),
        0,
        0,
        config={"devices": 4, "shard_params": True, "model_axis": 2, "batch_size": 32},
    )
    parser = build_parser(("train",))

    def config(*flags: str) -> TrainConfig:
        return resolve_config(parser.parse_args(["train", "x.arch", "--data", "d", *flags]), saved)

    assert (config().shard_params, config().model_parts) == (True, 2)
    off = config("--no-shard-params", "--devices", "2")
    assert (off.shard_params, off.model_axis, off.model_parts) == (False, None, 1)
    assert config("--devices", "2", "--model-axis", "1").model_parts == 1
    with pytest.raises(ArchTrainError, match="does nothing without `--shard-params`"):
        config("--no-shard-params", "--model-axis", "2")


STOP = textwrap.dedent("""
    import sys
    import jax, numpy as np
    from archdsl.train.distributed import Cluster, initialize
    initialize(Cluster(f"localhost:{sys.argv[2]}", 2, int(sys.argv[3]), timeout=60))
    from archdsl.frontend import build_graph_text
    from archdsl.train.checkpoint import load_checkpoint
    from archdsl.train.data import Split, load_data
    from archdsl.train.loop import TrainConfig, train

    graph = build_graph_text(sys.argv[1], "net.arch")
    data = load_data("digits", (8, 8, 1), 10)
    small = Split(data.train.take(np.arange(256)), data.test.take(np.arange(100)))
    folder = sys.argv[4]
    # Only process 1 asks to stop (as a Ctrl-C to it alone would): both must stop
    # after the same step, or one would wait forever in the next step's collectives.
    run = train(graph, small, TrainConfig(epochs=1, batch_size=32, devices=4),
                checkpoint_dir=folder, on_step=lambda step: step == 3 and jax.process_index() == 1)
    assert run.interrupted and run.step == 3, (run.interrupted, run.step)
    if jax.process_index() == 0:
        saved = load_checkpoint(f"{folder}/checkpoint.safetensors")
        assert (saved.step, saved.epoch, saved.position) == (3, 0, 3)
    print("stopped together", jax.process_index())
""")


@pytest.mark.slow
def test_a_stop_on_one_process_stops_them_all(tmp_path: Path) -> None:
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", STOP, NET, port, str(rank), str(tmp_path / f"run{rank}")],
            cwd=ROOT,
            env=_env(2, tmp_path / "cache"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    try:
        outputs = [proc.communicate(timeout=300) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for rank, (proc, (out, err)) in enumerate(zip(procs, outputs, strict=True)):
        assert proc.returncode == 0, out + err[-3000:]
        assert f"stopped together {rank}" in out
    assert not (tmp_path / "run1").exists()  # process 1 writes nothing

"""Data parallelism: a step on 4 (host) devices equals the step on 1.

JAX fixes its device count when it starts, so the 4-device check runs in a subprocess
started with `XLA_FLAGS=--xla_force_host_platform_device_count=4`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import pytest

from archdsl.train.parallel import ArchDeviceError, check_batch, make_mesh

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent('''
    import jax, numpy as np
    from archdsl.train.data import Split, load_data
    from archdsl.frontend import build_graph_text
    from archdsl.backend.model import compile_graph
    from archdsl.train.parallel import make_mesh, replicate, replicated, shard_batch
    from archdsl.train.loop import (TrainConfig, make_optimizer, make_train_step, partition,
                               train, training_graph)

    assert jax.device_count() == 4, jax.devices()
    graph = build_graph_text("""
    network Net(classes = 10) {
        input 8x8x1
        conv 8 3x3 same bias = false as conv -> batchnorm as bn -> relu
        aux side weight = 0.3 { globalavgpool -> dense classes as fc -> softmax }
        maxpool 2x2 as pool
        flatten -> dropout 0.2
        dense classes as fc -> softmax
    }
    """, "net.arch")
    model = compile_graph(training_graph(graph))
    params, state = model.init(jax.random.key(0))
    trainable, frozen = partition(params, model.trainable(params))
    config = TrainConfig(optimizer="sgd", lr=0.1, weight_decay=1e-3, epochs=1, batch_size=64)
    optimizer = make_optimizer(config, 4)  # as `train` makes it: 256 examples, 4 steps
    opt_state = optimizer.init(trainable)
    data = load_data("digits", (8, 8, 1), 10)
    x, y = data.train.x[:64], data.train.y[:64]
    key = jax.random.key(5)

    results = {}
    for devices in (1, 4):
        mesh = make_mesh(devices)
        step = make_train_step(model, optimizer, {"side": 0.3}, replicated(mesh))
        xs, ys = shard_batch((x, y), mesh)
        assert len(xs.sharding.device_set) == devices
        assert xs.addressable_shards[0].data.shape == (64 // devices, 8, 8, 1)
        out = step(*replicate((trainable, frozen, state, opt_state), mesh), xs, ys, key)
        for leaf in jax.tree.leaves(out[:3]):
            assert leaf.sharding.is_fully_replicated
            assert len(leaf.sharding.device_set) == devices
        results[devices] = jax.device_get(out)
    one, four = results[1], results[4]
    assert jax.tree.structure(one) == jax.tree.structure(four)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(four), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    moved = max(float(np.abs(a - b).max()) for a, b in
                zip(jax.tree.leaves(one[0]), jax.tree.leaves(trainable)))
    assert moved > 1e-4, moved  # the step did change the weights

    # A whole run on 4 devices: its steps are the program compiled above (from the
    # compilation cache), its evaluation pads the last batch to a multiple of 4.
    small = Split(data.train.take(np.arange(256)), data.test.take(np.arange(102)))
    run = train(graph, small, config.__class__(**{**config.to_json(), "devices": 4}))
    assert run.step == 4 and np.isfinite(run.history[-1].test_loss)
    assert 0 <= run.history[-1].test_accuracy <= 1
    print("4 devices OK")
''')


@pytest.mark.slow
def test_four_devices_equal_one(tmp_path: Path) -> None:
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=str(tmp_path),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 devices OK" in done.stdout


def test_more_devices_than_there_are() -> None:
    with pytest.raises(ArchDeviceError, match=r"asks for \d+ devices, but JAX sees") as info:
        make_mesh(jax.device_count() + 1)
    if jax.devices()[0].platform == "cpu":
        assert "xla_force_host_platform_device_count" in str(info.value)
    with pytest.raises(ArchDeviceError, match="at least 1"):
        make_mesh(0)


def test_batch_must_split_over_the_devices() -> None:
    mesh = make_mesh(1)
    check_batch(7, mesh)
    fake = type("FakeMesh", (), {"devices": type("D", (), {"size": 4})()})()
    with pytest.raises(ArchDeviceError, match="does not split over 4 devices") as info:
        check_batch(10, fake)  # type: ignore[arg-type]
    assert "e.g. 12" in str(info.value)

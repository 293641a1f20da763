"""LeNet-5 and a small ResNet from specs/ run forward and backward on real arrays."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from archdsl.compiler import compile_file

SPECS = Path(__file__).resolve().parents[1] / "specs"


def _loss(model, params, state, x, y):  # type: ignore[no-untyped-def]
    out, new_state = model.apply(params, state, x, train=True, key=jax.random.key(3))
    logits = out["output"]
    # The specs end in softmax: train on its log, as archdsl train does from the logits.
    log_probs = jnp.log(jnp.clip(logits, 1e-7, 1.0))
    return -jnp.mean(jnp.take_along_axis(log_probs, y[:, None], axis=1)), new_state


@pytest.mark.parametrize(("spec", "arguments"), [("lenet5.arch", {}), ("tiny_resnet.arch", {})])
def test_forward_backward_and_a_few_steps_lower_the_loss(spec: str, arguments: dict) -> None:
    model = compile_file(SPECS / spec, **arguments)
    params, state = model.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(16, *model.input_shape)), jnp.float32)
    classes = model.output_shape[-1]
    y = jnp.asarray(rng.integers(0, classes, size=16))

    out, _ = model.apply(params, state, x)
    assert out.shape == (16, *model.output_shape)
    assert np.all(np.isfinite(np.asarray(out)))

    grad_fn = jax.jit(jax.value_and_grad(lambda p, s: _loss(model, p, s, x, y), has_aux=True))
    (first, state), grads = grad_fn(params, state)
    leaves = jax.tree_util.tree_leaves(grads)
    assert leaves and all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
    assert sum(float(jnp.abs(g).sum()) for g in leaves) > 0

    optimizer = optax.adam(1e-2)
    opt_state = optimizer.init(params)
    for _ in range(5):
        (_, state), grads = grad_fn(params, state)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    (last, _), _ = grad_fn(params, state)
    assert float(last) < float(first)


def test_lenet_bfloat16_agrees_with_float32() -> None:
    f32 = compile_file(SPECS / "lenet5.arch")
    bf16 = compile_file(SPECS / "lenet5.arch", dtype="bfloat16")
    params, state = f32.init(jax.random.key(0))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 32, 32, 1)), jnp.float32)
    a, _ = f32.apply(params, state, x)
    b, _ = bf16.apply(params, state, x)
    assert b.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=2e-2, rtol=5e-2)

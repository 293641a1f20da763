"""Shared test configuration: strict JAX broadcasting and the hypothesis profiles."""

import os

import jax
from hypothesis import settings

# Silent rank promotion hides shape bugs: make it an error (as Equinox's tests do).
jax.config.update("jax_numpy_rank_promotion", "raise")

# JAX compiles inside examples, so no deadlines. "ci" is reproducible; "dev" explores.
settings.register_profile("ci", derandomize=True, deadline=None, max_examples=50, print_blob=True)
settings.register_profile("dev", deadline=None, max_examples=20)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

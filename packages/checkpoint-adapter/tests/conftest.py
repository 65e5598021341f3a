"""Test setup: 8 simulated CPU devices, set before JAX is imported."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
# Strict dtype promotion is left off: optax's adam mixes Python floats with int32 counts.
# No Orbax warning needs filtering: every restore passes explicit shardings and types.

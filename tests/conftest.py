"""Strict test settings: rank promotion raises, warnings are errors (pyproject)."""

import os

# Tests see 8 simulated CPU devices; the single-device code paths still run on device 0.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def rng():
  return jax.random.key(0)

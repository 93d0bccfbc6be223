"""jdl.train.precision: dtype policies and dynamic loss scaling."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jdl import optim
from jdl.train import precision
from jdl.train.precision import DynamicLossScale, Policy, select_tree

# --------------------------------------------------------------------------- #
# Policy.
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name,compute", [("float32", "float32"), ("bfloat16", "bfloat16"),
                                          ("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")])
def test_presets_keep_params_and_outputs_float32(name, compute):
  policy = precision.get_policy(name)
  assert (policy.param_dtype, policy.compute_dtype, policy.output_dtype) == (
      jnp.dtype("float32"), jnp.dtype(compute), jnp.dtype("float32"))
  assert policy.needs_loss_scaling == (compute == "float16")


def test_explicit_policy_string():
  policy = Policy.from_string("params=bfloat16, compute=bfloat16, output=float32")
  assert policy.param_dtype == jnp.bfloat16 and policy.output_dtype == jnp.float32
  assert precision.get_policy(policy) is policy


def test_casts_touch_only_floating_leaves():
  policy = precision.get_policy("mixed_float16")
  tree = {"x": jnp.ones((2,), jnp.float32), "labels": jnp.arange(2), "mask": jnp.array([True, False]),
          "scale": 2.0}
  compute = policy.cast_to_compute(tree)
  assert compute["x"].dtype == jnp.float16
  assert compute["labels"].dtype == tree["labels"].dtype and compute["mask"].dtype == jnp.bool_
  assert compute["scale"] == 2.0
  assert policy.cast_to_output(compute)["x"].dtype == jnp.float32
  assert policy.cast_to_param({"w": jnp.ones(2, jnp.bfloat16)})["w"].dtype == jnp.float32


def test_bad_policy_names():
  with pytest.raises(ValueError, match="unknown policy 'float8'.*mixed_bfloat16"):
    Policy.from_string("float8")
  with pytest.raises(ValueError, match="unknown field 'param'"):
    Policy.from_string("param=float32")
  with pytest.raises(ValueError, match="compute_dtype must be one of"):
    Policy(compute_dtype="int8")


# --------------------------------------------------------------------------- #
# Loss scaling.
# --------------------------------------------------------------------------- #

POLICY = precision.get_policy("mixed_float16")
X = jnp.full((4,), 1e-4, jnp.float32)


def _loss(params, x):
  """Float16 compute: dL/dw = 1e-4·x = 1e-8, below float16's smallest subnormal (≈ 6e-8)."""
  w, x = POLICY.cast_to_compute((params["w"], x))
  h = w * x
  return POLICY.cast_to_output(jnp.sum(h) * jnp.float16(1e-4))


def test_float16_gradients_underflow_without_scaling_and_survive_with_it():
  params = {"w": jnp.array([1.0, -2.0, 3.0, 0.5], jnp.float32)}
  reference = jax.grad(lambda p: jnp.sum(p["w"] * X) * 1e-4)(params)["w"]  # float32 throughout
  np.testing.assert_allclose(reference, 1e-8, rtol=1e-6)

  unscaled = jax.grad(_loss)(params, X)["w"]
  assert unscaled.dtype == jnp.float32  # the gradient flows back through the cast to the float32 params
  np.testing.assert_array_equal(unscaled, 0.0)  # flushed to zero in float16

  loss_scale = DynamicLossScale.create(2.0**15)
  scaled = jax.grad(lambda p: loss_scale.scale_loss(_loss(p, X)))(params)
  grads, finite = loss_scale.unscale_and_check(scaled)
  assert bool(finite)
  np.testing.assert_allclose(grads["w"], reference, rtol=2e-3)  # float16's 11-bit mantissa


def _train_step(tx):
  """The train step from the module docstring."""

  @jax.jit
  def step(params, opt_state, loss_scale, x):
    def loss_fn(p):
      w = POLICY.cast_to_compute(p["w"])
      loss = POLICY.cast_to_output(jnp.sum(w * POLICY.cast_to_compute(x)))
      return loss_scale.scale_loss(loss)

    grads, finite = loss_scale.unscale_and_check(jax.grad(loss_fn)(params))
    updates, new_opt_state = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    params, opt_state = select_tree(finite, (new_params, new_opt_state), (params, opt_state))
    return params, opt_state, loss_scale.adjust(finite), finite

  return step


def test_overflowing_steps_are_skipped_and_the_scale_backs_off():
  # dL/dw = x = 10 in float16; scaled by s it overflows (> 65504) for s >= 8192 and is finite at 4096.
  tx = optim.create("adam", learning_rate=0.1)
  params = {"w": jnp.ones(3, jnp.float32)}
  opt_state = tx.init(params)
  loss_scale = DynamicLossScale.create(2.0**15, growth_interval=100)
  x = jnp.full((3,), 10.0, jnp.float32)
  step = _train_step(tx)
  scales, finites = [], []
  for _ in range(3):
    new_params, new_opt_state, loss_scale, finite = step(params, opt_state, loss_scale, x)
    finites.append(bool(finite))
    scales.append(float(loss_scale.scale))
    # Skipped: parameters and optimizer state bit-identical (no NaN/inf leaked in).
    assert jax.tree.all(jax.tree.map(lambda a, b: np.array_equal(a, b), (new_params, new_opt_state),
                                     (params, opt_state)))
    params, opt_state = new_params, new_opt_state
  assert finites == [False, False, False]
  assert scales == [2.0**14, 2.0**13, 2.0**12]
  params, opt_state, loss_scale, finite = step(params, opt_state, loss_scale, x)
  assert bool(finite)
  assert float(loss_scale.scale) == 2.0**12 and int(loss_scale.counter) == 1
  np.testing.assert_allclose(params["w"], 1.0 - 0.1, rtol=1e-6)  # adam's first step: lr·sign(g)


def test_inf_gradient_skips_the_update():
  loss_scale = DynamicLossScale.create(8.0)
  grads = {"a": jnp.array([1.0, jnp.inf]), "b": jnp.ones(2, jnp.float16), "step": jnp.array(3)}
  unscaled, finite = loss_scale.unscale_and_check(grads)
  assert not bool(finite)
  np.testing.assert_array_equal(unscaled["b"], np.full(2, 0.125, np.float16))
  assert unscaled["b"].dtype == jnp.float16 and unscaled["step"].dtype == grads["step"].dtype
  _, finite = loss_scale.unscale_and_check({"a": jnp.array([1.0, jnp.nan])})
  assert not bool(finite)
  _, finite = loss_scale.unscale_and_check({"a": jnp.array([1.0, 2.0])})
  assert bool(finite)


def test_scale_growth_and_backoff_numbers():
  loss_scale = DynamicLossScale.create(2.0**15, growth_interval=3, factor=2.0, min_scale=2.0**14,
                                       max_scale=2.0**16)
  traces = []

  @jax.jit
  def adjust(ls, finite):
    traces.append(None)  # runs only while tracing
    return ls.adjust(finite)

  pattern = [True, True, True, True, False, False, False, True, True, True, True, True, True]
  expected = [(2**15, 1), (2**15, 2), (2**16, 0), (2**16, 1), (2**15, 0), (2**14, 0), (2**14, 0),
              (2**14, 1), (2**14, 2), (2**15, 0), (2**15, 1), (2**15, 2), (2**16, 0)]
  got = []
  for finite in pattern:
    loss_scale = adjust(loss_scale, jnp.asarray(finite))
    got.append((float(loss_scale.scale), int(loss_scale.counter)))
  assert got == [(float(s), c) for s, c in expected]
  # At max_scale it stays there.
  for _ in range(3):
    loss_scale = adjust(loss_scale, jnp.asarray(True))
  assert float(loss_scale.scale) == 2.0**16
  assert len(traces) == 1  # the state's avals and static fields never change: compiled once


def test_scale_loss_multiplies():
  loss_scale = DynamicLossScale.create(4.0)
  assert float(loss_scale.scale_loss(jnp.float32(1.5))) == 6.0
  assert loss_scale.scale_loss(jnp.float32(1.5)).dtype == jnp.float32


def test_select_tree():
  new, old = {"a": jnp.ones(2), "n": jnp.array(1)}, {"a": jnp.zeros(2), "n": jnp.array(0)}
  assert select_tree(jnp.array(True), new, old)["n"] == 1
  np.testing.assert_array_equal(select_tree(jnp.array(False), new, old)["a"], 0.0)
  with pytest.raises(ValueError, match="pred must be a scalar bool"):
    select_tree(jnp.array([True, False]), new, old)


def test_bad_loss_scale_arguments():
  with pytest.raises(ValueError, match="factor must be > 1, got 1.0"):
    DynamicLossScale.create(factor=1.0)
  with pytest.raises(ValueError, match="growth_interval must be >= 1, got 0"):
    DynamicLossScale.create(growth_interval=0)
  with pytest.raises(ValueError, match="initial_scale must be in"):
    DynamicLossScale.create(2.0**30)

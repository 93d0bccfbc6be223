"""jdl.regularizers: penalties, masks, weight decay, L1 proximal sparsity, max-norm."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jdl.losses
import jdl.regularizers as R


class _Net(nn.Module):

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(3)(x)
    x = nn.LayerNorm()(x)
    return nn.Dense(2)(x)


def _params():
  params = _Net().init(jax.random.key(0), jnp.ones((1, 4)))["params"]
  # make every leaf non-trivial so that leaving one out shows in the values
  leaves, treedef = jax.tree.flatten(params)
  rng = np.random.default_rng(0)
  return jax.tree.unflatten(treedef, [jnp.asarray(rng.normal(size=x.shape), jnp.float32) for x in leaves])


def test_default_mask_leaves_out_biases_and_norm_parameters():
  params = _params()
  assert R.param_paths(params) == ["Dense_0/bias", "Dense_0/kernel", "Dense_1/bias", "Dense_1/kernel",
                                   "LayerNorm_0/bias", "LayerNorm_0/scale"]
  mask = R.default_mask(params)
  assert jax.tree.leaves(mask) == [False, True, False, True, False, False]


def test_penalties_equal_hand_computation():
  params = _params()
  kernels = np.concatenate([np.ravel(params["Dense_0"]["kernel"]), np.ravel(params["Dense_1"]["kernel"])])
  kernels = kernels.astype(np.float64)
  assert float(R.l1(0.3)(params)) == pytest.approx(0.3 * np.abs(kernels).sum(), rel=1e-6)
  assert float(R.l2(0.3)(params)) == pytest.approx(0.15 * (kernels ** 2).sum(), rel=1e-6)
  assert float(R.linf(0.3)(params)) == pytest.approx(0.3 * np.abs(kernels).max(), rel=1e-6)
  assert float(R.elastic_net(0.1, 0.2)(params)) == pytest.approx(
      0.1 * np.abs(kernels).sum() + 0.1 * (kernels ** 2).sum(), rel=1e-6)
  assert float(R.get("l2", strength=0.3)(params)) == float(R.l2(0.3)(params))
  # L0 counts (near-)zeros among the masked weights only
  sparse = jax.tree.map(lambda x: x.at[..., 0].set(0.0), params)
  num_zero = params["Dense_0"]["kernel"].shape[0] + params["Dense_1"]["kernel"].shape[0]
  assert int(R.l0()(sparse)) == num_zero
  assert int(R.l0(tol=10.0)(sparse)) == R.count_params(sparse) == kernels.size
  # jit-able and differentiable (except the L0 count)
  grads = jax.jit(jax.grad(R.l2(0.5)))(params)
  np.testing.assert_allclose(grads["Dense_0"]["kernel"], 0.5 * params["Dense_0"]["kernel"], rtol=1e-6)
  np.testing.assert_array_equal(grads["Dense_0"]["bias"], 0.0)


def test_masks_from_patterns():
  params = _params()
  all_leaves = R.make_mask(exclude=())
  assert all(jax.tree.leaves(all_leaves(params)))
  only_first = R.make_mask(include="Dense_0/*")
  assert jax.tree.leaves(only_first(params)) == [False, True, False, False, False, False]
  # a pattern also covers everything below it
  assert jax.tree.leaves(R.make_mask(include="Dense_0", exclude=())(params)) == [True, True, False, False, False, False]
  assert jax.tree.leaves(R.make_mask(exclude="LayerNorm_0")(params)) == [True] * 4 + [False] * 2  # replaces the default
  assert jax.tree.leaves(R.make_mask(exclude=r"Dense_\d", syntax="regex")(params)) == [False] * 4 + [True] * 2
  regex = R.make_mask(include=r"Dense_\d+/(kernel|bias)", exclude=r".*_1/.*", syntax="regex")
  assert jax.tree.leaves(regex(params)) == [True, True, False, False, False, False]
  everything = float(R.l1(1.0, mask=all_leaves)(params))
  total = sum(float(jnp.abs(x).sum()) for x in jax.tree.leaves(params))
  assert everything == pytest.approx(total, rel=1e-6)
  explicit = jax.tree.map(lambda _: False, params)
  assert float(R.l2(1.0, mask=explicit)(params)) == 0.0
  assert float(R.linf(1.0, mask=explicit)(params)) == 0.0
  with pytest.raises(ValueError, match="mask's tree structure"):
    R.l2(1.0, mask={"Dense_0": True})(params)
  with pytest.raises(ValueError, match="exclude pattern '\\(' is not a valid regex"):
    R.make_mask(exclude="(", syntax="regex")
  with pytest.raises(ValueError, match="syntax must be 'glob' or 'regex'"):
    R.make_mask(syntax="re")
  with pytest.raises(ValueError, match="unknown regularizer 'l3'; known regularizers: elastic_net, l0, l1, l2, linf"):
    R.get("l3")
  with pytest.raises(ValueError, match="strength must be a non-negative number, got -1"):
    R.l2(-1)


def _sgd_steps(tx, loss_fn, params, steps=3):
  state = tx.init(params)
  for _ in range(steps):
    grads = jax.grad(loss_fn)(params)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return params


def test_l2_penalty_with_sgd_equals_decoupled_weight_decay():
  params = _params()
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(8, 4)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 2, 8))
  lr, lam = 0.1, 0.05

  def data_loss(p):
    return jnp.mean(jdl.losses.sparse_categorical_crossentropy(_Net().apply({"params": p}, x), y))

  penalized = _sgd_steps(optax.sgd(lr), lambda p: data_loss(p) + R.l2(lam)(p), params)
  decayed = _sgd_steps(optax.chain(R.weight_decay(lam), optax.sgd(lr)), data_loss, params)
  optax_decayed = _sgd_steps(optax.chain(optax.add_decayed_weights(lam, mask=R.default_mask), optax.sgd(lr)),
                             data_loss, params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), penalized, decayed)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), penalized, optax_decayed)
  # one step is the course formula w <- w - lr (dL/dw + lam w), biases and norm parameters undecayed
  one = _sgd_steps(optax.chain(R.weight_decay(lam), optax.sgd(lr)), data_loss, params, steps=1)
  grads = jax.grad(data_loss)(params)
  mask = R.default_mask(params)
  expected = jax.tree.map(lambda w, g, m: w - lr * (g + lam * w * m), params, grads, mask)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), one, expected)


def test_l1_proximal_soft_thresholds_exactly():
  params = {"kernel": jnp.array([0.5, -0.5, 0.05, -0.02, 1.0]), "bias": jnp.array([0.01])}
  grads = {"kernel": jnp.array([1.0, -1.0, 0.0, 0.0, 0.0]), "bias": jnp.array([0.0])}
  tx = optax.chain(optax.sgd(0.1), R.l1_proximal(0.5, learning_rate=0.1))  # threshold 0.05
  updates, _ = tx.update(grads, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  # z = w - 0.1 g = [0.4, -0.4, 0.05, -0.02, 1.0] -> sign(z) max(|z| - 0.05, 0)
  np.testing.assert_allclose(new["kernel"], [0.35, -0.35, 0.0, 0.0, 0.95], rtol=1e-6)
  assert new["kernel"][2] == 0.0 and new["kernel"][3] == 0.0  # exact zeros
  assert float(new["bias"][0]) == pytest.approx(0.01)  # the bias is not shrunk
  # a schedule: threshold follows the step's learning rate
  schedule = optax.piecewise_constant_schedule(0.1, {1: 0.0})
  tx = R.l1_proximal(0.5, learning_rate=schedule)
  state = tx.init(params)
  zeros = jax.tree.map(jnp.zeros_like, params)
  first, state = tx.update(zeros, state, params)
  second, state = tx.update(zeros, state, params)
  np.testing.assert_allclose(first["kernel"], [-0.05, 0.05, -0.05, 0.02, -0.05], rtol=1e-6)
  np.testing.assert_array_equal(second["kernel"], 0.0)
  with pytest.raises(ValueError, match="needs the current parameters"):
    tx.update(zeros, state)


def test_l1_proximal_training_gives_more_exact_zeros_than_l2():
  """Sparse linear regression: 3 of 30 features matter."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(200, 30)), jnp.float32)
  true_w = np.zeros(30, np.float32)
  true_w[:3] = [2.0, -3.0, 1.5]
  y = x @ true_w + 0.1 * jnp.asarray(rng.normal(size=200), jnp.float32)
  params = {"kernel": jnp.asarray(rng.normal(size=30) * 0.1, jnp.float32), "bias": jnp.zeros(())}
  lr, lam = 0.05, 0.1

  def data_loss(p):
    return jnp.mean(jdl.losses.mse(x @ p["kernel"] + p["bias"], y))

  def train(tx, loss_fn):
    def step(carry, _):
      p, state = carry
      updates, state = tx.update(jax.grad(loss_fn)(p), state, p)
      return (optax.apply_updates(p, updates), state), None
    return jax.lax.scan(step, (params, tx.init(params)), length=300)[0][0]

  train = jax.jit(train, static_argnums=(0, 1))
  proximal = train(optax.chain(optax.sgd(lr), R.l1_proximal(lam, lr)), data_loss)
  subgradient = train(optax.sgd(lr), lambda p: data_loss(p) + R.l1(lam)(p))
  ridge = train(optax.sgd(lr), lambda p: data_loss(p) + R.l2(lam)(p))
  zeros = {name: int(R.l0()(p)) for name, p in
           (("proximal", proximal), ("subgradient", subgradient), ("ridge", ridge))}
  assert zeros["proximal"] >= 20, zeros
  assert zeros["ridge"] == 0 and zeros["subgradient"] <= 2, zeros
  assert np.all(np.asarray(proximal["kernel"][:3]) != 0)  # the informative weights survive


def test_max_norm_projects_incoming_weight_vectors():
  params = {"Dense_0": {"kernel": jnp.array([[3.0, 0.1], [4.0, 0.1]]), "bias": jnp.array([100.0, 100.0])}}
  grads = {"Dense_0": {"kernel": jnp.array([[-1.0, 1.0], [0.0, 1.0]]), "bias": jnp.array([-1.0, -1.0])}}
  tx = optax.chain(optax.sgd(1.0), R.max_norm(2.0))
  updates, _ = tx.update(grads, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  # column 0 becomes [4, 4] (norm 4*sqrt(2)) and is scaled to norm 2; column 1 ([-0.9, -0.9]) is within the ball
  np.testing.assert_allclose(new["Dense_0"]["kernel"][:, 0], [np.sqrt(2), np.sqrt(2)], rtol=1e-6)
  np.testing.assert_allclose(new["Dense_0"]["kernel"][:, 1], [-0.9, -0.9], rtol=1e-6)
  np.testing.assert_allclose(new["Dense_0"]["bias"], [101.0, 101.0])  # biases are not constrained
  norms = jnp.linalg.norm(new["Dense_0"]["kernel"], axis=0)
  assert float(norms.max()) <= 2.0 + 1e-5
  # per-row norms for embedding tables
  table = {"embedding": jnp.array([[3.0, 4.0], [0.3, 0.4]])}
  tx = R.max_norm(1.0, axis=-1)
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, table), tx.init(table), table)
  np.testing.assert_allclose(optax.apply_updates(table, updates)["embedding"], [[0.6, 0.8], [0.3, 0.4]], rtol=1e-6)
  with pytest.raises(ValueError, match="max_value must be a positive number, got 0"):
    R.max_norm(0)
  with pytest.raises(ValueError, match="needs the current parameters"):
    tx.update(table, tx.init(table))


# --- config.regularizer --------------------------------------------------------------------------------------------


def test_from_spec_sums_its_terms_over_the_masked_parameters():
  import jax.numpy as jnp

  params = {"Dense_0": {"kernel": jnp.array([[3.0, -4.0]]), "bias": jnp.array([10.0, 10.0])},
            "BatchNorm_0": {"scale": jnp.array([2.0]), "bias": jnp.array([1.0])}}
  assert float(R.from_spec("l2:0.1,l1:0.01")(params)) == pytest.approx(0.05 * 25 + 0.01 * 7)
  assert float(R.from_spec("linf:0.5")(params)) == pytest.approx(0.5 * 4)
  assert float(R.from_spec("elastic_net:0.01:0.1")(params)) == pytest.approx(0.01 * 7 + 0.05 * 25)
  everything = R.from_spec("l1:1", exclude=())
  assert float(everything(params)) == pytest.approx(7 + 20 + 2 + 1)
  assert float(R.from_spec("l1:1", exclude=("*bias",))(params)) == pytest.approx(7 + 2)
  assert R.from_spec("") is None and R.from_spec(" , ") is None


@pytest.mark.parametrize("spec, message", [
    ("l3:1", "unknown regularizer 'l3' in 'l3:1'; known regularizers: elastic_net, l1, l2, linf"),
    ("l2", "'l2' should be written l2:STRENGTH"),
    ("elastic_net:0.1", "should be written elastic_net:L1_STRENGTH:L2_STRENGTH"),
    ("l2:abc", "the strength in 'l2:abc' is not a number"),
    ("l1:-1", "strengths must be finite numbers >= 0"),
    (3, "expected a string such as 'l2:1e-4'"),
])
def test_bad_regularizer_specs_are_named(spec, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    R.parse_spec(spec)


def test_the_config_regularizer_is_the_objective_of_jdl_train(tiny_data, tmp_path, monkeypatch):
  import json

  import jax

  from jdl import cli

  small = ["--config.model.options.hidden=(8,)", "--config.data.batch_size=64", "--config.progress=false",
           "--config.plot=false", "--config.epochs=1", "--config.tensorboard=false"]
  assert cli.main(["train", "mlp_fashion_mnist", "--workdir", str(tmp_path / "plain"), *small]) == 0
  assert cli.main(["train", "mlp_fashion_mnist", "--workdir", str(tmp_path / "l2"), *small,
                   "--config.regularizer=l2:0.5"]) == 0
  plain = json.loads((tmp_path / "plain" / "metrics.jsonl").read_text().splitlines()[0])
  l2 = json.loads((tmp_path / "l2" / "metrics.jsonl").read_text().splitlines()[0])
  assert "train_objective" not in plain and l2["train_objective"] > l2["train_loss"]
  from jdl.train import runs

  norms = []
  for name in ("plain", "l2"):
    params = runs.load_run(tmp_path / name).variables["params"]
    norms.append(sum(float((p["kernel"] ** 2).sum()) for p in params.values()))
  assert norms[1] < 0.9 * norms[0]  # the penalty shrinks the weights (0.82x here in 10 steps)

  def no_compiling(*args, **kwargs):
    raise AssertionError("compiled before the error")

  monkeypatch.setattr(jax.stages.Lowered, "compile", no_compiling)
  assert cli.main(["train", "mlp_fashion_mnist", "--workdir", str(tmp_path / "bad"), *small,
                   "--config.regularizer=l2:1e-4,l7:1"]) == 2
  assert not (tmp_path / "bad").exists()

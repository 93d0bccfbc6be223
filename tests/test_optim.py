"""jdl.optim: optimizers, schedules, the config builder, clipping/accumulation/freezing."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from optax import contrib

import jdl.optim as optim

# --------------------------------------------------------------------------- #
# Convergence: every optimizer on a 2-D quadratic and on Rosenbrock.
# --------------------------------------------------------------------------- #

X0 = (-1.2, 1.0)
QUAD_MIN = np.array([1.0, -2.0])
ROSEN_MIN = np.array([1.0, 1.0])
QUAD_STEPS, ROSEN_STEPS = 300, 5000
WC = {"name": "warmup_cosine", "warmup_steps": 500}


def quadratic(p):
  x = p["x"]
  return (x[0] - 1.0)**2 + 10.0 * (x[1] + 2.0)**2


def rosenbrock(p):
  x = p["x"]
  return (1.0 - x[0])**2 + 100.0 * (x[1] - x[0]**2)**2


# name, hparams, (quadratic lr, schedule), (rosenbrock lr, schedule, tolerance on ‖x - (1, 1)‖).
# Quadratic tolerance is 1e-3 for all. Rosenbrock tolerances are what each method honestly reaches in
# 5000 steps from (-1.2, 1): plain SGD, Adagrad, Adafactor and the schedule-free pair crawl along the
# curved valley and only get near (1, 1). Sign-like methods (Lion, Adafactor) need a decaying schedule
# to settle. Muon's Newton-Schulz step applies to matrices only; on this vector parameter it runs its
# AdamW (Nesterov) fallback — test_muon_orthogonalised_step_converges_on_matrix_quadratic covers the matrix path.
CONVERGENCE = [
    ("sgd", {}, (0.03, None), (3e-3, "cosine", 0.15)),
    ("momentum", {}, (0.03, None), (3e-3, None, 1e-3)),
    ("nesterov", {}, (0.03, None), (1e-3, None, 1e-3)),
    ("adagrad", {}, (1.0, None), (1.0, None, 0.1)),
    ("rmsprop", {}, (0.1, "cosine"), (0.01, "cosine", 0.03)),
    ("rmsprop", {"centered": True}, (0.01, "cosine"), (3e-3, "cosine", 0.03)),
    ("rmsprop", {"centered": True, "momentum": 0.9}, (0.003, "cosine"), (1e-3, "cosine", 1e-3)),
    ("adam", {}, (0.3, None), (0.1, "cosine", 1e-3)),
    ("adamw", {}, (0.3, None), (0.1, "cosine", 0.01)),  # weight decay moves the optimum slightly
    ("nadam", {}, (0.3, None), (0.1, "cosine", 1e-3)),
    ("nadamw", {}, (0.3, None), (0.1, "cosine", 0.01)),
    ("radam", {}, (0.3, None), (0.3, WC, 1e-3)),  # its un-normalised first steps need a warmup here
    ("lamb", {}, (0.1, "cosine"), (0.03, "cosine", 1e-3)),
    ("lion", {}, (0.1, "cosine"), (3e-3, WC, 1e-3)),
    ("adafactor", {}, (0.1, "cosine"), (0.03, "cosine", 0.1)),
    ("muon", {}, (0.1, None), (0.1, "cosine", 1e-3)),
    ("schedule_free_adamw", {}, (1.0, None), (0.1, None, 0.1)),
    ("schedule_free_sgd", {}, (0.3, None), (1e-3, None, 0.1)),
]


def _run(loss_fn, tx, steps):
  """Minimises ``loss_fn`` from X0 with a jitted lax.scan; returns the evaluation parameters."""

  @jax.jit
  def loop(params):
    state = tx.init(params)

    def body(carry, _):
      params, state = carry
      updates, state = tx.update(jax.grad(loss_fn)(params), state, params)
      return (optax.apply_updates(params, updates), state), None

    (params, state), _ = jax.lax.scan(body, (params, state), None, length=steps)
    return optim.eval_params(state, params)

  return np.asarray(loop({"x": jnp.asarray(X0)})["x"])


def test_convergence_table_covers_every_builtin_optimizer():
  assert {row[0] for row in CONVERGENCE} == set(optim.list_optimizers())


@pytest.mark.parametrize("name,hparams,quad,rosen", CONVERGENCE, ids=lambda v: v if isinstance(v, str) else "")
def test_converges_on_quadratic_and_rosenbrock(name, hparams, quad, rosen):
  lr, sched = quad
  tx = optim.from_config({"name": name, "learning_rate": lr, "schedule": sched, "hparams": hparams},
                         total_steps=QUAD_STEPS)
  x = _run(quadratic, tx, QUAD_STEPS)
  assert np.linalg.norm(x - QUAD_MIN) < 1e-3, x

  lr, sched, tol = rosen
  tx = optim.from_config({"name": name, "learning_rate": lr, "schedule": sched, "hparams": hparams},
                         total_steps=ROSEN_STEPS)
  x = _run(rosenbrock, tx, ROSEN_STEPS)
  assert np.linalg.norm(x - ROSEN_MIN) < tol, x
  start = rosenbrock({"x": jnp.asarray(X0)})
  assert rosenbrock({"x": jnp.asarray(x)}) < 1e-2 * start


def test_muon_orthogonalised_step_converges_on_matrix_quadratic():
  target = jax.random.normal(jax.random.key(1), (4, 3))
  tx = optim.from_config({"name": "muon", "learning_rate": 0.1, "schedule": "cosine"}, total_steps=300)
  params = {"w": jnp.zeros((4, 3))}
  state = tx.init(params)
  # The matrix goes through the Newton-Schulz branch (it has a momentum buffer in MuonState).
  assert any(isinstance(s, contrib.MuonState) for s in jax.tree.leaves(
      state, is_leaf=lambda s: isinstance(s, contrib.MuonState)))
  # The first update is lr·(approximately orthogonal matrix): muon's 5 quintic Newton-Schulz steps map
  # every singular value of the (normalised) momentum into roughly [0.7, 1.2], not exactly to 1.
  grads = {"w": params["w"] - target}
  updates, _ = jax.jit(tx.update)(grads, state, params)
  sv = np.linalg.svd(np.asarray(updates["w"]), compute_uv=False) / 0.1
  assert np.all((sv > 0.6) & (sv < 1.25)), sv
  sv_grad = np.linalg.svd(np.asarray(grads["w"]), compute_uv=False)
  assert sv_grad.max() / sv_grad.min() > 2.0  # while the gradient's are far from equal

  loss = lambda p: 0.5 * jnp.sum((p["w"] - target)**2)

  @jax.jit
  def loop(params, state):
    def body(carry, _):
      params, state = carry
      updates, state = tx.update(jax.grad(loss)(params), state, params)
      return (optax.apply_updates(params, updates), state), None
    return jax.lax.scan(body, (params, state), None, length=300)[0]

  params, _ = loop(params, state)
  np.testing.assert_allclose(params["w"], target, atol=1e-3)


# --------------------------------------------------------------------------- #
# First steps equal the textbook updates computed by hand.
# --------------------------------------------------------------------------- #

P0 = np.array([0.5, -1.0, 2.0])
G1 = np.array([0.3, -0.2, 4.0])
G2 = np.array([-0.1, 0.5, 1.0])


def _two_updates(name, lr, **hparams):
  tx = optim.create(name, learning_rate=lr, **hparams)
  params = jnp.asarray(P0, jnp.float32)
  state = tx.init(params)
  update = jax.jit(tx.update)
  u1, state = update(jnp.asarray(G1, jnp.float32), state, params)
  params = optax.apply_updates(params, u1)
  u2, state = update(jnp.asarray(G2, jnp.float32), state, params)
  return np.asarray(u1, np.float64), np.asarray(u2, np.float64)


def test_sgd_first_steps():
  u1, u2 = _two_updates("sgd", 0.1)
  np.testing.assert_allclose(u1, -0.1 * G1, rtol=1e-6)
  np.testing.assert_allclose(u2, -0.1 * G2, rtol=1e-6)


def test_momentum_velocity():
  lr, mu = 0.1, 0.9
  u1, u2 = _two_updates("momentum", lr, momentum=mu)
  v1 = G1
  v2 = mu * v1 + G2
  np.testing.assert_allclose(u1, -lr * v1, rtol=1e-6)
  np.testing.assert_allclose(u2, -lr * v2, rtol=1e-6)


def test_nesterov_look_ahead():
  lr, mu = 0.1, 0.9
  u1, u2 = _two_updates("nesterov", lr, momentum=mu)
  v1 = G1
  v2 = mu * v1 + G2
  np.testing.assert_allclose(u1, -lr * (G1 + mu * v1), rtol=1e-6)
  np.testing.assert_allclose(u2, -lr * (G2 + mu * v2), rtol=1e-6)


def test_adagrad_sum_of_squares():
  lr, g0, eps = 0.5, 0.1, 0.5  # a large ε shows where it goes (inside the root)
  u1, u2 = _two_updates("adagrad", lr, eps=eps)
  acc1 = g0 + G1**2
  acc2 = acc1 + G2**2
  np.testing.assert_allclose(u1, -lr * G1 / np.sqrt(acc1 + eps), rtol=1e-6)
  np.testing.assert_allclose(u2, -lr * G2 / np.sqrt(acc2 + eps), rtol=1e-6)


def test_rmsprop_running_average_of_squares():
  lr, rho, eps = 0.01, 0.9, 0.05  # a large ε shows where it goes (outside the root)
  u1, u2 = _two_updates("rmsprop", lr, decay=rho, eps=eps)
  v1 = (1 - rho) * G1**2
  v2 = rho * v1 + (1 - rho) * G2**2
  np.testing.assert_allclose(u1, -lr * G1 / (np.sqrt(v1) + eps), rtol=1e-6)
  np.testing.assert_allclose(u2, -lr * G2 / (np.sqrt(v2) + eps), rtol=1e-6)


def test_centered_rmsprop_divides_by_standard_deviation():
  lr, rho, eps = 0.01, 0.9, 0.05
  u1, u2 = _two_updates("rmsprop", lr, decay=rho, centered=True, eps=eps)
  m1, v1 = (1 - rho) * G1, (1 - rho) * G1**2
  m2, v2 = rho * m1 + (1 - rho) * G2, rho * v1 + (1 - rho) * G2**2
  np.testing.assert_allclose(u1, -lr * G1 / (np.sqrt(v1 - m1**2) + eps), rtol=1e-5)
  np.testing.assert_allclose(u2, -lr * G2 / (np.sqrt(v2 - m2**2) + eps), rtol=1e-5)


def test_rmsprop_momentum_buffer():
  lr, rho, mu, eps = 0.01, 0.9, 0.5, 1e-8
  u1, u2 = _two_updates("rmsprop", lr, decay=rho, momentum=mu)
  v1 = (1 - rho) * G1**2
  v2 = rho * v1 + (1 - rho) * G2**2
  b1 = G1 / (np.sqrt(v1) + eps)
  b2 = mu * b1 + G2 / (np.sqrt(v2) + eps)
  np.testing.assert_allclose(u1, -lr * b1, rtol=1e-6)
  np.testing.assert_allclose(u2, -lr * b2, rtol=1e-6)


def _adam_moments(b1, b2):
  m1, v1 = (1 - b1) * G1, (1 - b2) * G1**2
  m2, v2 = b1 * m1 + (1 - b1) * G2, b2 * v1 + (1 - b2) * G2**2
  return (m1, v1), (m2, v2)


def test_adam_bias_corrected_moments():
  lr, b1, b2, eps = 0.01, 0.9, 0.999, 0.1  # a large ε shows where it goes
  u1, u2 = _two_updates("adam", lr, b1=b1, b2=b2, eps=eps)
  (m1, v1), (m2, v2) = _adam_moments(b1, b2)
  mhat1, vhat1 = m1 / (1 - b1), v1 / (1 - b2)
  mhat2, vhat2 = m2 / (1 - b1**2), v2 / (1 - b2**2)
  # rtol 2e-5: float32(0.999) makes 1 - β₂ off by 1.3e-5 relative.
  np.testing.assert_allclose(u1, -lr * mhat1 / (np.sqrt(vhat1) + eps), rtol=2e-5)
  np.testing.assert_allclose(u2, -lr * mhat2 / (np.sqrt(vhat2) + eps), rtol=2e-5)


def test_adamw_decoupled_weight_decay():
  lr, b1, b2, eps, wd = 0.01, 0.9, 0.999, 1e-8, 0.1
  u1, _ = _two_updates("adamw", lr, weight_decay=wd)
  np.testing.assert_allclose(u1, -lr * (G1 / (np.abs(G1) + eps) + wd * P0), rtol=2e-5)


def test_nadam_nesterov_first_moment():
  lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
  u1, u2 = _two_updates("nadam", lr)
  (m1, v1), (m2, v2) = _adam_moments(b1, b2)
  mhat1 = b1 * m1 / (1 - b1**2) + (1 - b1) * G1 / (1 - b1)
  mhat2 = b1 * m2 / (1 - b1**3) + (1 - b1) * G2 / (1 - b1**2)
  np.testing.assert_allclose(u1, -lr * mhat1 / (np.sqrt(v1 / (1 - b2)) + eps), rtol=2e-5)
  np.testing.assert_allclose(u2, -lr * mhat2 / (np.sqrt(v2 / (1 - b2**2)) + eps), rtol=2e-5)


def test_radam_starts_with_momentum_steps():
  lr, b1 = 0.01, 0.9
  u1, u2 = _two_updates("radam", lr)
  (m1, _), (m2, _) = _adam_moments(b1, 0.999)
  # ρ_t < 5 for the first steps: the update is the bias-corrected momentum, not normalised.
  np.testing.assert_allclose(u1, -lr * m1 / (1 - b1), rtol=1e-6)
  np.testing.assert_allclose(u2, -lr * m2 / (1 - b1**2), rtol=1e-6)


def test_lion_sign_update():
  lr, b1, b2 = 0.01, 0.9, 0.99
  u1, u2 = _two_updates("lion", lr)
  m1 = (1 - b2) * G1
  np.testing.assert_allclose(u1, -lr * np.sign(G1), rtol=1e-6)
  np.testing.assert_allclose(u2, -lr * np.sign(b1 * m1 + (1 - b1) * G2), rtol=1e-6)


def test_lamb_trust_ratio():
  lr, eps = 0.01, 1e-6
  u1, _ = _two_updates("lamb", lr)
  direction = G1 / (np.abs(G1) + eps)
  ratio = np.linalg.norm(P0) / np.linalg.norm(direction)
  np.testing.assert_allclose(u1, -lr * ratio * direction, rtol=1e-6)


# --------------------------------------------------------------------------- #
# Compiled once.
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", sorted(optim.list_optimizers()))
def test_update_step_traced_once(name):
  tx = optim.from_config({"name": name, "schedule": {"name": "warmup_cosine", "warmup_steps": 2},
                          "clip_global_norm": 1.0, "accumulate_steps": 2, "freeze": ["frozen"]}, total_steps=20)
  traces = []

  @jax.jit
  def step(params, state):
    traces.append(None)  # Python side effect: runs only while tracing.
    grads = jax.grad(lambda p: jnp.sum(p["w"]**2) + jnp.sum(p["b"]**2) + jnp.sum(p["frozen"]))(params)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  params = {"w": jnp.ones((3, 2)), "b": jnp.ones(2), "frozen": jnp.ones(2)}
  state = tx.init(params)
  for _ in range(5):
    params, state = step(params, state)
  assert len(traces) == 1
  assert np.all(np.asarray(params["w"]) < 1.0)  # it did train


# --------------------------------------------------------------------------- #
# Gradient accumulation, clipping, freezing.
# --------------------------------------------------------------------------- #


def _regression_data():
  kx, kn = jax.random.split(jax.random.key(3))
  x = jax.random.normal(kx, (16, 3))
  y = x @ jnp.array([1.0, -2.0, 0.5]) + 0.1 * jax.random.normal(kn, (16,))
  return x, y


def _mse(params, x, y):
  return jnp.mean((x @ params["w"] + params["b"] - y)**2)


def _scan_train(tx, params, xs, ys):
  """Runs ``tx`` over the batches ``xs[i], ys[i]`` in one jitted scan; returns params after each step."""

  @jax.jit
  def run(params, xs, ys):
    def body(carry, batch):
      params, state = carry
      updates, state = tx.update(jax.grad(_mse)(params, *batch), state, params)
      params = optax.apply_updates(params, updates)
      return (params, state), params

    return jax.lax.scan(body, (params, tx.init(params)), (xs, ys))[1]

  return run(params, xs, ys)


def test_accumulation_equals_one_large_batch_step():
  x, y = _regression_data()
  k, steps = 4, 2
  cfg = {"name": "adam", "learning_rate": 0.1}
  params0 = {"w": jnp.zeros(3), "b": jnp.zeros(())}
  # Two steps on the whole batch of 16.
  big = _scan_train(optim.from_config(cfg), params0, jnp.stack([x] * steps), jnp.stack([y] * steps))
  # The same two steps as 2 × 4 micro-batches of 4 (mean of equal-size means = the full mean).
  micro_x = jnp.concatenate([x.reshape(k, 4, 3)] * steps)
  micro_y = jnp.concatenate([y.reshape(k, 4)] * steps)
  small = _scan_train(optim.from_config({**cfg, "accumulate_steps": k}), params0, micro_x, micro_y)
  for i in range(k * steps):
    if i % k < k - 1:  # the micro-steps before the k-th leave the parameters alone
      before = params0 if i == 0 else jax.tree.map(lambda a: a[i - 1], small)
      assert jax.tree.all(jax.tree.map(lambda a, b: np.array_equal(a[i], b), small, before))
  for j in range(steps):
    for leaf, ref in zip(jax.tree.leaves(small), jax.tree.leaves(big)):
      np.testing.assert_allclose(leaf[k * j + k - 1], ref[j], rtol=1e-5, atol=1e-6)
  assert not np.allclose(big["w"][0], big["w"][1])


def test_accumulation_counts_schedule_in_updates():
  # total_steps counts train-step calls; with k = 2 the linear schedule spans 200 // 2 = 100 updates.
  tx = optim.from_config({"name": "sgd", "learning_rate": 1.0, "schedule": "linear", "accumulate_steps": 2},
                         total_steps=200)
  params = jnp.zeros(())
  state = tx.init(params)
  emitted = []
  for _ in range(4):
    updates, state = jax.jit(tx.update)(jnp.ones(()), state, params)
    emitted.append(float(updates))
  np.testing.assert_allclose(emitted, [0.0, -1.0, 0.0, -0.99], rtol=1e-6)


def test_clipping_bounds_the_global_norm():
  tx = optim.from_config({"name": "sgd", "learning_rate": 1.0, "clip_global_norm": 0.5})
  params = {"a": jnp.zeros(3), "b": jnp.zeros((2, 2))}
  state = tx.init(params)
  big = {"a": jnp.array([3.0, 4.0, 0.0]), "b": jnp.full((2, 2), 6.0)}  # norm 13
  updates, state = jax.jit(tx.update)(big, state, params)
  assert float(optax.tree.norm(updates)) == pytest.approx(0.5, rel=1e-6)
  np.testing.assert_allclose(updates["a"], -0.5 * big["a"] / 13.0, rtol=1e-6)  # direction kept
  small = jax.tree.map(lambda g: g / 100.0, big)  # norm 0.13: untouched
  updates, _ = jax.jit(tx.update)(small, state, params)
  np.testing.assert_allclose(updates["b"], -small["b"], rtol=1e-6)


def _net_params():
  k = jax.random.split(jax.random.key(0), 4)
  return {"encoder": {"kernel": jax.random.normal(k[0], (3, 4)), "bias": jax.random.normal(k[1], (4,))},
          "head": {"kernel": jax.random.normal(k[2], (4, 2)), "bias": jax.random.normal(k[3], (2,))}}


def _train(tx, params, steps=5):
  loss = lambda p: jnp.sum(jnp.tanh(jnp.ones(3) @ p["encoder"]["kernel"] + p["encoder"]["bias"])
                           @ p["head"]["kernel"] + p["head"]["bias"])

  @jax.jit
  def run(params):
    def body(carry, _):
      params, state = carry
      updates, state = tx.update(jax.grad(loss)(params), state, params)
      return (optax.apply_updates(params, updates), state), None

    return jax.lax.scan(body, (params, tx.init(params)), None, length=steps)[0]

  return run(params)


def test_freezing_leaves_frozen_params_bit_identical():
  params0 = _net_params()
  tx = optim.from_config({"name": "adamw", "learning_rate": 0.1, "hparams": {"weight_decay": 0.5},
                          "clip_global_norm": 1.0, "freeze": ["encoder", "*/bias"]})
  params, state = _train(tx, params0)
  assert np.asarray(params["encoder"]["kernel"]).tobytes() == np.asarray(params0["encoder"]["kernel"]).tobytes()
  assert np.asarray(params["encoder"]["bias"]).tobytes() == np.asarray(params0["encoder"]["bias"]).tobytes()
  assert np.asarray(params["head"]["bias"]).tobytes() == np.asarray(params0["head"]["bias"]).tobytes()
  assert not np.allclose(params["head"]["kernel"], params0["head"]["kernel"])
  # Frozen leaves carry no optimizer moments.
  mu = [s.mu for s in jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
        if isinstance(s, optax.ScaleByAdamState)]
  assert len(mu) == 1 and isinstance(mu[0]["encoder"]["kernel"], optax.MaskedNode)


def test_freeze_pattern_matching_nothing_is_an_error():
  tx = optim.from_config({"name": "sgd", "freeze": ["encoder", "decoder"]})
  with pytest.raises(ValueError, match="'decoder' matches no parameter.*encoder/kernel"):
    tx.init(_net_params())


def test_param_paths_and_path_mask():
  params = _net_params()
  assert optim.param_paths(params)["head"]["bias"] == "head/bias"
  mask = optim.path_mask(["*/kernel"])(params)
  assert mask == {"encoder": {"kernel": True, "bias": False}, "head": {"kernel": True, "bias": False}}


def test_weight_decay_exclude():
  params = {"kernel": jnp.full((2,), 2.0), "bias": jnp.full((2,), 2.0)}
  tx = optim.create("adamw", learning_rate=0.1, weight_decay=0.5, weight_decay_exclude=["bias"])
  state = tx.init(params)
  updates, _ = jax.jit(tx.update)(jax.tree.map(jnp.zeros_like, params), state, params)
  np.testing.assert_allclose(updates["kernel"], -0.1 * 0.5 * 2.0, rtol=1e-6)
  np.testing.assert_array_equal(updates["bias"], 0.0)


# --------------------------------------------------------------------------- #
# Schedule-free evaluation parameters.
# --------------------------------------------------------------------------- #


def test_schedule_free_eval_params_found_under_wrappers():
  x, y = _regression_data()
  params0 = {"w": jnp.zeros(3), "b": jnp.zeros(())}
  bare = optim.create("schedule_free_adamw", learning_rate=0.05)
  wrapped = optim.from_config({"name": "schedule_free_adamw", "learning_rate": 0.05, "clip_global_norm": 1e6,
                               "accumulate_steps": 2, "freeze": ["b"]})
  bare_state, wrapped_state = bare.init(params0), wrapped.init(params0)
  params_bare = params_wrapped = params0
  for _ in range(6):
    g = jax.grad(_mse)(params_bare, x, y)
    g = {"w": g["w"], "b": jnp.zeros(())}  # b is frozen in the wrapped run
    updates, bare_state = jax.jit(bare.update)(g, bare_state, params_bare)
    params_bare = optax.apply_updates(params_bare, updates)
    for _ in range(2):  # two identical micro-batches = one update
      updates, wrapped_state = jax.jit(wrapped.update)(g, wrapped_state, params_wrapped)
      params_wrapped = optax.apply_updates(params_wrapped, updates)
  expected = contrib.schedule_free_eval_params(bare_state, params_bare)
  got = optim.eval_params(wrapped_state, params_wrapped)
  np.testing.assert_allclose(got["w"], expected["w"], rtol=1e-5)
  assert not np.allclose(got["w"], params_wrapped["w"])  # x differs from the training sequence y
  assert float(got["b"]) == 0.0
  # Other optimizers: the parameters themselves.
  adam = optim.create("adam", learning_rate=0.1)
  assert optim.eval_params(adam.init(params0), params0) is params0


# --------------------------------------------------------------------------- #
# Schedules at chosen steps equal their formulas.
# --------------------------------------------------------------------------- #


def _at(fn, *steps):
  fn = jax.jit(fn)
  return [float(fn(jnp.asarray(t, jnp.int32))) for t in steps]


def test_warmup_cosine_values():
  fn = optim.schedule("warmup_cosine", learning_rate=1.0, total_steps=110, warmup_steps=10, end_value=0.1)
  np.testing.assert_allclose(_at(fn, 0, 5, 10, 60, 110, 500), [0.0, 0.5, 1.0, 0.55, 0.1, 0.1], atol=1e-6)


def test_cosine_values():
  fn = optim.schedule("cosine", learning_rate=2.0, decay_steps=100)
  expected = [2.0, 2.0 * 0.5 * (1 + math.cos(math.pi / 4)), 1.0, 0.0, 0.0]
  np.testing.assert_allclose(_at(fn, 0, 25, 50, 100, 150), expected, atol=1e-6)


def test_sgdr_restarts():
  # Cycles of 10, 20, 40 steps starting at 0, 10, 30; the peak halves at each restart.
  fn = optim.schedule("sgdr", learning_rate=1.0, cycle_steps=10, cycle_mult=2.0, decay_factor=0.5)
  half_cos = lambda frac: 0.5 * (1 + math.cos(math.pi * frac))
  steps = [0, 5, 9, 10, 20, 30, 50, 70, 110]
  expected = [1.0, 0.5, half_cos(0.9), 0.5, 0.25, 0.25, 0.125, 0.125, 0.0625]
  np.testing.assert_allclose(_at(fn, *steps), expected, atol=1e-6)
  fn = optim.schedule("sgdr", learning_rate=1.0, cycle_steps=10, end_value=0.2)
  np.testing.assert_allclose(_at(fn, 0, 5, 10, 25, 30), [1.0, 0.6, 1.0, 0.6, 1.0], atol=1e-6)


def test_one_cycle_peak():
  fn = optim.schedule("one_cycle", learning_rate=1.0, total_steps=100, pct_start=0.3, div_factor=25.0,
                      final_div_factor=1e4)
  np.testing.assert_allclose(_at(fn, 0, 15, 30, 65, 100), [0.04, 0.52, 1.0, 0.5 + 0.5 * 0.04 / 1e4, 4e-6],
                             rtol=1e-5)


def test_step_decay_boundaries():
  fn = optim.schedule("step_decay", learning_rate=1.0, boundaries=[10, 20])
  np.testing.assert_allclose(_at(fn, 0, 9, 10, 19, 20, 1000), [1.0, 1.0, 0.1, 0.1, 0.01, 0.01], rtol=1e-6)
  fn = optim.schedule("step_decay", learning_rate=2.0, boundaries=[5, 8], decay_rate=[0.5, 0.25])
  np.testing.assert_allclose(_at(fn, 4, 5, 8), [2.0, 1.0, 0.25], rtol=1e-6)
  fn = optim.schedule("step_decay", learning_rate=1.0, step_size=10, decay_rate=0.5)
  np.testing.assert_allclose(_at(fn, 9, 10, 25), [1.0, 0.5, 0.25], rtol=1e-6)


def test_exponential_linear_constant_warmup_constant():
  fn = optim.schedule("exponential", learning_rate=1.0, total_steps=100, decay_rate=0.1)
  np.testing.assert_allclose(_at(fn, 0, 50, 100), [1.0, 0.1**0.5, 0.1], rtol=1e-6)
  fn = optim.schedule("exponential", learning_rate=1.0, decay_steps=100, decay_rate=0.1, staircase=True)
  np.testing.assert_allclose(_at(fn, 99, 100, 250), [1.0, 0.1, 0.01], rtol=1e-6)
  fn = optim.schedule("linear", learning_rate=1.0, total_steps=100, end_value=0.1)
  np.testing.assert_allclose(_at(fn, 0, 50, 100, 200), [1.0, 0.55, 0.1, 0.1], rtol=1e-6)
  np.testing.assert_allclose(_at(optim.schedule("constant", learning_rate=0.3), 0, 10**6), [0.3, 0.3], rtol=1e-6)
  fn = optim.schedule("warmup_constant", learning_rate=1.0, warmup_steps=4)
  np.testing.assert_allclose(_at(fn, 0, 1, 4, 100), [0.0, 0.25, 1.0, 1.0], rtol=1e-6)


def test_schedule_from_config_reaches_the_optimizer():
  tx = optim.from_config({"name": "sgd", "learning_rate": 1.0,
                          "schedule": {"name": "step_decay", "boundaries": [2]}})
  params = jnp.zeros(())
  state = tx.init(params)
  got = []
  for _ in range(3):
    updates, state = jax.jit(tx.update)(jnp.ones(()), state, params)
    got.append(float(updates))
  np.testing.assert_allclose(got, [-1.0, -1.0, -0.1], rtol=1e-6)


# --------------------------------------------------------------------------- #
# Registry, search spaces, configs.
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", sorted(optim.list_optimizers()))
def test_search_space_is_data_the_factory_accepts(name):
  space = optim.search_space(name)
  lr = space["learning_rate"]
  assert lr["distribution"] == "log_uniform" and 0 < lr["low"] < lr["high"]
  hparams = {}
  for arg, dim in space.items():
    if arg == "learning_rate":
      continue
    assert dim["distribution"] in ("uniform", "log_uniform", "one_minus_log_uniform", "choice")
    hparams[arg] = dim["values"][0] if dim["distribution"] == "choice" else (dim["low"] + dim["high"]) / 2
  tx = optim.create(name, learning_rate=math.sqrt(lr["low"] * lr["high"]), **hparams)
  assert isinstance(tx, optax.GradientTransformation)
  space["learning_rate"]["low"] = -1.0  # a copy: the registry is untouched
  assert optim.search_space(name)["learning_rate"]["low"] > 0


def _space_midpoints(name):
  hparams = {}
  for arg, dim in optim.search_space(name).items():
    if dim["distribution"] == "choice":
      continue
    hparams[arg] = math.sqrt(dim["low"] * dim["high"]) if dim["distribution"] == "log_uniform" else (
        (dim["low"] + dim["high"]) / 2)
  return hparams


@pytest.mark.parametrize("name", sorted(optim.list_optimizers()))
def test_every_numeric_hyperparameter_can_be_an_array_under_vmap(name):
  # Two settings of every tuned hyperparameter in one vmapped program equal the two built from Python numbers.
  base = _space_midpoints(name)
  settings = [base, {k: v * 0.9 for k, v in base.items()}]
  params = {"w": jnp.asarray([[0.5, -1.0], [2.0, 0.3]]), "b": jnp.asarray([0.1, -0.2])}
  grads = jax.tree.map(lambda p: p * 0.7 + 0.05, params)

  def two_updates(hp):
    tx = optim.create(name, **hp)
    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    updates, _ = tx.update(grads, state, optax.apply_updates(params, updates))
    return updates

  stacked = {k: jnp.asarray([s[k] for s in settings], jnp.float32) for k in base}
  traced = jax.jit(jax.vmap(two_updates))(stacked)
  for i, hp in enumerate(settings):
    want = two_updates({k: float(np.float32(v)) for k, v in hp.items()})
    for a, b in zip(jax.tree.leaves(jax.tree.map(lambda x, i=i: x[i], traced)), jax.tree.leaves(want)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-7, err_msg=name)
  # A concrete bad value is still refused, also as a 0-d array.
  with pytest.raises(ValueError, match="learning_rate must be in"):
    optim.create(name, learning_rate=jnp.asarray(-1.0))


def test_an_averaging_optimizer_registers_its_evaluation_parameters():
  class AverageState(tuple):
    """A running average of the parameters (Polyak), as an optimizer state."""

  def averaged(decay):
    def init(params):
      return AverageState((jax.tree.map(jnp.copy, params),))

    def update(updates, state, params):
      new_params = optax.apply_updates(params, updates)
      avg = jax.tree.map(lambda a, p: decay * a + (1 - decay) * p, state[0], new_params)
      return updates, AverageState((avg,))

    return optax.GradientTransformation(init, update)

  optim.register_eval_params(AverageState, lambda state, params: state[0])
  tx = optax.chain(optax.sgd(0.1), averaged(0.5))
  params = {"w": jnp.asarray([1.0, 2.0])}
  state = tx.init(params)
  updates, state = tx.update({"w": jnp.asarray([1.0, 1.0])}, state, params)
  trained = optax.apply_updates(params, updates)
  np.testing.assert_allclose(trained["w"], [0.9, 1.9])
  np.testing.assert_allclose(optim.eval_params(state, trained)["w"], [0.95, 1.95])  # (1 + 0.9) / 2, (2 + 1.9) / 2
  assert optim.eval_params(None, trained) is trained
  with pytest.raises(TypeError, match="state_type must be a class"):
    optim.register_eval_params("AverageState", lambda s, p: p)


def test_momentum_search_space_range():
  assert optim.search_space("momentum")["momentum"] == {"distribution": "uniform", "low": 0.8, "high": 0.99}


def test_register_user_optimizer(monkeypatch):
  monkeypatch.setattr(optim.OPTIMIZERS, "_entries", dict(optim.OPTIMIZERS._entries))

  @optim.register("signsgd", learning_rate=0.5, search_space={"learning_rate": optim.log_uniform(1e-4, 1e-1)})
  def signsgd(learning_rate, *, weight_decay: float = 0.0) -> optax.GradientTransformation:
    return optax.chain(optax.scale_by_sign(), optax.add_decayed_weights(weight_decay),
                       optax.scale_by_learning_rate(learning_rate))

  assert "signsgd" in optim.list_optimizers()
  assert optim.search_space("signsgd") == {"learning_rate": {"distribution": "log_uniform", "low": 1e-4,
                                                             "high": 1e-1}}
  tx = optim.from_config(ml_collections.ConfigDict({"name": "signsgd", "hparams": {"weight_decay": 0.0}}))
  updates, _ = tx.update(jnp.array([3.0, -0.1]), tx.init(jnp.zeros(2)), jnp.zeros(2))
  np.testing.assert_allclose(updates, [-0.5, 0.5])  # the registered default learning rate
  with pytest.raises(ValueError, match="already registered"):
    optim.register("signsgd")(lambda learning_rate: optax.sgd(learning_rate))
  optim.register("signsgd", overwrite=True)(lambda learning_rate: optax.sgd(learning_rate))
  with pytest.raises(TypeError, match="learning_rate"):
    optim.register("nolr")(lambda lr: optax.sgd(lr))
  with pytest.raises(TypeError, match="accepted arguments: learning_rate, weight_decay"):
    optim.register("badspace", search_space={"learning_rate": optim.log_uniform(1e-3, 1.0),
                                             "momentum": optim.uniform(0.8, 0.9)})(signsgd)
  with pytest.raises(ValueError, match="log_uniform and needs low > 0"):
    optim.register("badspace", search_space={"learning_rate": optim.log_uniform(0.0, 1.0)})


def test_from_config_accepts_configdict_and_rmsprop_centered():
  cfg = ml_collections.ConfigDict({"name": "rmsprop", "learning_rate": 1e-3, "hparams": {"centered": True},
                                   "schedule": {"name": "warmup_cosine", "warmup_steps": 10},
                                   "clip_global_norm": None, "accumulate_steps": 1, "freeze": []})
  tx = optim.from_config(cfg, total_steps=100)
  state = tx.init(jnp.zeros(2))
  assert any(isinstance(s, optax.ScaleByRStdDevState) for s in state)


# --------------------------------------------------------------------------- #
# Bad input.
# --------------------------------------------------------------------------- #


def test_unknown_names_list_known_ones():
  with pytest.raises(ValueError, match=r"unknown optimizer 'adamm'.*adafactor, adagrad, adam, adamw"):
    optim.create("adamm", learning_rate=1e-3)
  with pytest.raises(ValueError, match=r"unknown optimizer 'adamm'.*sgd"):
    optim.from_config({"name": "adamm"})
  with pytest.raises(ValueError, match=r"unknown schedule 'cosin'.*constant, cosine"):
    optim.from_config({"name": "adam", "schedule": "cosin"}, total_steps=10)
  with pytest.raises(ValueError, match=r"unknown config keys \['lr'\].*learning_rate"):
    optim.from_config({"name": "adam", "lr": 1e-3})


def test_negative_learning_rate():
  with pytest.raises(ValueError, match=r"learning_rate must be in \[0, inf\), got -0.001"):
    optim.create("adam", learning_rate=-1e-3)
  with pytest.raises(ValueError, match="learning_rate"):
    optim.from_config({"name": "sgd", "learning_rate": -0.1})
  with pytest.raises(ValueError, match="learning_rate"):
    optim.schedule("cosine", learning_rate=-1.0, total_steps=10)
  with pytest.raises(TypeError, match="learning_rate"):
    optim.create("adam", learning_rate="0.1")


def test_accumulate_steps_below_one():
  with pytest.raises(ValueError, match="accumulate_steps must be >= 1, got 0"):
    optim.from_config({"name": "sgd", "accumulate_steps": 0})
  with pytest.raises(TypeError, match="accumulate_steps must be an integer, got 2.5"):
    optim.from_config({"name": "sgd", "accumulate_steps": 2.5})


def test_bad_hyperparameters():
  with pytest.raises(TypeError, match="beta1.*accepted arguments: learning_rate, b1, b2, eps"):
    optim.create("adam", learning_rate=1e-3, beta1=0.9)
  with pytest.raises(ValueError, match=r"adam: b1 must be in \[0, 1\), got 1.0"):
    optim.create("adam", learning_rate=1e-3, b1=1.0)
  with pytest.raises(ValueError, match="momentum"):
    optim.create("momentum", learning_rate=1e-3, momentum=-0.5)
  with pytest.raises(ValueError, match=r"clip_global_norm must be in \(0, inf\), got 0.0"):
    optim.from_config({"name": "sgd", "clip_global_norm": 0.0})
  with pytest.raises(ValueError, match="decay_steps is required when total_steps is unknown"):
    optim.from_config({"name": "sgd", "schedule": "cosine"})
  with pytest.raises(TypeError, match="warmup_steps"):
    optim.from_config({"name": "sgd", "schedule": "warmup_cosine"}, total_steps=100)
  with pytest.raises(ValueError, match="boundaries must be strictly increasing"):
    optim.schedule("step_decay", learning_rate=1.0, boundaries=[20, 10])
  with pytest.raises(TypeError, match="freeze must be a list"):
    optim.from_config({"name": "sgd", "freeze": [3]})

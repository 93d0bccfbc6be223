"""jdl.attacks: FGSM and PGD against hand computations, their ε-balls and ranges; load_run and `jdl attack`."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.datasets import load_digits

from jdl import attacks, cli
from jdl import config as config_lib
from jdl.config import load_experiment
from jdl.train import experiment, runs

# One worker runs this module, so that its module-scoped run is set up once (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("attacks")


@pytest.fixture(scope="module")
def digits_linear():
  """A softmax regression trained on scikit-learn's digits (inputs in [0, 1]): ``(W, b, x, y)``."""
  data = load_digits()
  x = jnp.asarray(data.data / 16.0, jnp.float32)
  y = jnp.asarray(data.target, jnp.int32)
  params = {"w": jnp.zeros((64, 10)), "b": jnp.zeros(10)}
  tx = optax.adam(0.05)

  def loss(p):
    return optax.softmax_cross_entropy_with_integer_labels(x @ p["w"] + p["b"][None], y).mean()

  def body(carry, _):
    p, s = carry
    u, s = tx.update(jax.grad(loss)(p), s, p)
    return (optax.apply_updates(p, u), s), None

  (params, _), _ = jax.lax.scan(body, (params, tx.init(params)), None, length=300)
  return params["w"], params["b"], x, y


def _linear(w, b):
  return lambda v: v @ w + b[None]


def test_fgsm_is_eps_times_the_sign_of_the_analytic_input_gradient(digits_linear):
  w, b, x, y = digits_linear
  x, y = x[:50], y[:50]
  # Cross-entropy of a linear model: d loss / d x = (softmax(xW + b) - onehot(y)) Wᵀ.
  grad = (jax.nn.softmax(x @ w + b[None]) - jax.nn.one_hot(y, 10)) @ w.T
  eps = 0.1
  got = attacks.fgsm(_linear(w, b), x, y, eps=eps, clip=None)
  np.testing.assert_allclose(got - x, eps * jnp.sign(grad), atol=1e-6)
  # With the valid range: clip(x + eps·sign(∇)) exactly.
  np.testing.assert_array_equal(attacks.fgsm(_linear(w, b), x, y, eps=eps),
                                jnp.clip(x + eps * jnp.sign(grad), 0.0, 1.0))
  # Targeted: a step down the target's loss.
  target = (y + 1) % 10
  grad_t = (jax.nn.softmax(x @ w + b[None]) - jax.nn.one_hot(target, 10)) @ w.T
  np.testing.assert_allclose(attacks.fgsm(_linear(w, b), x, target, eps=eps, targeted=True, clip=None) - x,
                             -eps * jnp.sign(grad_t), atol=1e-6)


def test_fgsm_on_a_small_network_equals_the_hand_written_formula():
  k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
  w1, w2 = jax.random.normal(k1, (12, 16)), jax.random.normal(k2, (16, 3))
  x = jax.random.uniform(k3, (5, 12))
  y = jnp.asarray([0, 1, 2, 1, 0])

  def logits_fn(v):
    return jnp.tanh(v @ w1) @ w2

  g = jax.grad(lambda v: jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits_fn(v), y)))(x)
  np.testing.assert_array_equal(attacks.fgsm(logits_fn, x, y, eps=0.03), jnp.clip(x + 0.03 * jnp.sign(g), 0, 1))
  # One logit: binary cross-entropy's gradient.
  w3 = jax.random.normal(k2, (12, 1))
  yb = jnp.asarray([0, 1, 1, 0, 1])
  gb = jax.grad(lambda v: jnp.sum(optax.sigmoid_binary_cross_entropy((v @ w3)[:, 0], yb.astype(jnp.float32))))(x)
  np.testing.assert_array_equal(attacks.fgsm(lambda v: v @ w3, x, yb, eps=0.05),
                                jnp.clip(x + 0.05 * jnp.sign(gb), 0, 1))


def test_pgd_of_one_step_from_x_equals_fgsm(digits_linear):
  w, b, x, y = digits_linear
  f = _linear(w, b)
  one = attacks.pgd(f, x[:64], y[:64], eps=0.07, step_size=0.07, steps=1, random_start=False)
  np.testing.assert_array_equal(one, attacks.fgsm(f, x[:64], y[:64], eps=0.07))


@pytest.mark.parametrize("norm,eps", [("linf", 0.08), ("l2", 1.5)])
def test_pgd_stays_in_its_ball_and_the_valid_range_and_beats_fgsm(digits_linear, norm, eps):
  w, b, x, y = digits_linear
  f = _linear(w, b)
  x_adv = attacks.pgd(f, x, y, eps=eps, step_size=eps / 4, steps=10, norm=norm, key=jax.random.key(1))
  delta = np.asarray(x_adv - x)
  if norm == "linf":
    assert np.abs(delta).max() <= eps + 1e-6
  else:
    assert np.sqrt((delta ** 2).sum(axis=1)).max() <= eps + 1e-5
  assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
  clean = float(jnp.mean(jnp.argmax(f(x), -1) == y))
  robust = float(jnp.mean(jnp.argmax(f(x_adv), -1) == y))
  assert clean > 0.95 and robust < clean - 0.2
  if norm == "linf":
    fgsm_acc = float(jnp.mean(jnp.argmax(f(attacks.fgsm(f, x, y, eps=eps)), -1) == y))
    assert robust <= fgsm_acc
  # Jitted, eps traced: the same examples.
  jitted = jax.jit(lambda e, k: attacks.pgd(f, x, y, eps=e, step_size=e / 4, steps=10, norm=norm, key=k))
  np.testing.assert_allclose(jitted(jnp.float32(eps), jax.random.key(1)), x_adv, atol=1e-5)


def test_a_targeted_pgd_reaches_its_target(digits_linear):
  w, b, x, y = digits_linear
  f = _linear(w, b)
  target = (y[:100] + 3) % 10
  x_adv = attacks.pgd(f, x[:100], target, eps=0.3, step_size=0.03, steps=20, targeted=True, random_start=False)
  assert float(jnp.mean(jnp.argmax(f(x_adv), -1) == target)) > 0.9


def test_robust_accuracy_compiles_once_and_pgd_is_stronger(digits_linear):
  w, b, x, y = digits_linear
  f = _linear(w, b)
  before = attacks._attack_batch._cache_size()  # pylint: disable=protected-access
  pgd = attacks.robust_accuracy(f, x, y, eps=(0.02, 0.05, 0.1), method="pgd", batch_size=900)
  after = attacks._attack_batch._cache_size()  # pylint: disable=protected-access
  assert after - before == 2  # one program per batch shape (900 and the last 897), for every eps
  fgsm = attacks.robust_accuracy(f, x, y, eps=(0.02, 0.05, 0.1), method="fgsm", batch_size=900)
  assert pgd["clean_accuracy"] == fgsm["clean_accuracy"] > 0.95
  assert pgd["examples"] == len(x) and pgd["step_size"] == pytest.approx([0.005, 0.0125, 0.025])
  assert all(p <= q for p, q in zip(pgd["accuracy"], fgsm["accuracy"]))
  assert pgd["accuracy"] == sorted(pgd["accuracy"], reverse=True)  # larger eps, lower accuracy
  first = pgd["first"]
  assert first["x_adv"].shape == (900, 64) and np.abs(first["x_adv"] - first["x"]).max() <= 0.1 + 1e-6


@pytest.mark.parametrize("call,message", [
    (lambda f, x, y: attacks.fgsm(f, x, y, eps=-0.1), "eps: expected a finite number >= 0, got -0.1"),
    (lambda f, x, y: attacks.pgd(f, x, y, eps=0.1, step_size=0.01, steps=5, norm="l1", key=jax.random.key(0)),
     "norm: expected one of linf, l2, got 'l1'"),
    (lambda f, x, y: attacks.pgd(f, x, y, eps=0.1, step_size=0.01, steps=0, key=jax.random.key(0)),
     "steps: expected an int >= 1, got 0"),
    (lambda f, x, y: attacks.pgd(f, x, y, eps=0.1, step_size=0.01, steps=3), "key: random_start=True needs"),
    (lambda f, x, y: attacks.robust_accuracy(f, x, y, eps=(0.1,), method="cw"),
     "method: expected one of fgsm, pgd, got 'cw'"),
    (lambda f, x, y: attacks.fgsm(f, x, y, eps=0.1, clip=(1, 0)), "clip: expected None or a (low, high) pair"),
])
def test_bad_arguments_are_named(digits_linear, call, message):
  w, b, x, y = digits_linear
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    call(_linear(w, b), x[:4], y[:4])


def _train_tiny(tmp_path, name="run", **overrides):
  config = load_experiment("mlp_fashion_mnist")
  for key, value in {"epochs": "2", "progress": "false", "plot": "false", **overrides}.items():
    config_lib.apply_override(config, key, value)
  workdir = tmp_path / name
  return experiment.train_and_evaluate(config, workdir), workdir


def test_load_run_restores_the_evaluated_network_and_jdl_attack_writes_its_files(tiny_data, tmp_path, capsys):
  summary, workdir = _train_tiny(tmp_path)
  run = runs.load_run(workdir)
  assert run.epoch == 2 and run.task == "classification" and run.class_names[0] == "T-shirt/top"
  test = run.split("test")
  accuracy = float(jnp.mean(jnp.argmax(run.logits(run.inputs(test)), -1) == test["label"]))
  assert accuracy == pytest.approx(summary["test_accuracy"], abs=1e-6)  # the network jdl train evaluated
  assert runs.load_run(workdir, epoch="best").epoch in (1, 2)
  with pytest.raises(ValueError, match=r"epoch: expected one of the run's checkpoints \[.*\] or 'best', got 7"):
    runs.load_run(workdir, epoch=7)

  assert cli.main(["attack", str(workdir), "--eps", "0.05,0.2", "--method", "fgsm", "--limit", "100"]) == 0
  out = capsys.readouterr().out
  assert "| 0 (clean) |" in out and "| 0.2 |" in out
  saved = json.loads((workdir / "attack.json").read_text())
  assert saved["examples"] == 100 and saved["eps"] == [0.05, 0.2] and saved["method"] == "fgsm"
  assert saved["accuracy"][1] <= saved["accuracy"][0] <= saved["clean_accuracy"]
  assert (workdir / "attack.png").stat().st_size > 1000
  # Bad input: a clear error, before anything is loaded or compiled.
  assert cli.main(["attack", str(workdir), "--eps", "-0.1"]) == 2
  assert "eps: expected a finite number >= 0, got -0.1" in capsys.readouterr().err
  assert cli.main(["attack", str(workdir), "--eps", "0.1", "--norm", "l3"]) == 2
  assert "norm: expected one of linf, l2, got 'l3'" in capsys.readouterr().err
  assert cli.main(["attack", str(workdir), "--eps", "0.1", "--step-size", "-0.01"]) == 2
  assert "step_size: expected a finite number >= 0, got -0.01" in capsys.readouterr().err
  assert cli.main(["attack", str(workdir), "--eps", "0.1", "--epoch", "last"]) == 2
  assert "--epoch: expected an epoch number or 'best', got 'last'" in capsys.readouterr().err
  assert cli.main(["attack", str(tmp_path), "--eps", "0.1"]) == 2
  assert "holds no config.json; it is not the workdir of a `jdl train` run" in capsys.readouterr().err


def test_a_run_without_checkpoints_is_named(tiny_data, tmp_path):
  _, workdir = _train_tiny(tmp_path, **{"checkpoint.enabled": "false", "epochs": "1"})
  with pytest.raises(FileNotFoundError, match="has no checkpoint in"):
    runs.load_run(workdir)


def test_adversarial_transform_replaces_the_first_fraction_of_each_batch_with_attacks():
  from jdl.train import create_train_state, make_train_step  # pylint: disable=g-import-not-at-top

  import jdl.losses  # pylint: disable=g-import-not-at-top
  import jdl.models  # pylint: disable=g-import-not-at-top

  model = jdl.models.create("mlp", num_classes=3, hidden=(8,))
  state = create_train_state(model, optax.sgd(0.1), jnp.zeros((1, 6)), seed=0)
  x = jax.random.uniform(jax.random.key(1), (8, 6))
  y = jnp.asarray([0, 1, 2, 0, 1, 2, 0, 1])
  transform = attacks.adversarial_transform(model.apply, "inputs", method="fgsm", eps=0.1, fraction=0.5)
  out = transform(state, {"inputs": x, "label": y}, jax.random.key(2))

  def logits_fn(v):
    return model.apply({"params": state.params}, v, train=False)

  np.testing.assert_array_equal(out["inputs"][:4], attacks.fgsm(logits_fn, x[:4], y[:4], eps=0.1))
  np.testing.assert_array_equal(out["inputs"][4:], x[4:])
  # In the train step: the update is plain SGD on the transformed batch, the attack held constant.
  loss = jdl.losses.get("sparse_categorical_crossentropy")
  step = make_train_step(apply_fn=model.apply, loss_fn=loss, tx=optax.sgd(0.1), input_key="inputs",
                         batch_transforms=(transform,))
  new, _ = step(state, {"inputs": x, "label": y})
  grads = jax.grad(lambda p: jnp.mean(loss(model.apply({"params": p}, out["inputs"], train=True), {"label": y})))(
      state.params)
  for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(jax.tree.map(lambda p, g: p - 0.1 * g,
                                                                             state.params, grads))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match=r"fraction: expected a number in \(0, 1\], got 0"):
    attacks.adversarial_transform(model.apply, method="pgd", fraction=0)


def test_adversarial_training_from_the_config_makes_the_network_more_robust(tiny_data, tmp_path):
  results = {}
  for name, overrides in (("standard", {}), ("adversarial", {"adversarial.method": "fgsm", "adversarial.eps": "0.3",
                                                             "adversarial.fraction": "1.0"})):
    summary, workdir = _train_tiny(tmp_path, name, **{"epochs": "3", **overrides})
    run = runs.load_run(workdir)
    test = run.split("test")
    table = attacks.robust_accuracy(run.logits_fn(), run.inputs(test), test["label"], eps=(0.3,), method="fgsm")
    results[name] = (summary["test_accuracy"], table["accuracy"][0])
  assert results["standard"][0] > 0.9 and results["adversarial"][0] > 0.9, results
  assert results["adversarial"][1] > results["standard"][1] + 0.2, results
  with pytest.raises(ValueError, match="adversarial.method: expected '' \\(off\\), 'fgsm' or 'pgd', got 'cw'"):
    _train_tiny(tmp_path, "bad", **{"adversarial.method": "cw"})
  assert not (tmp_path / "bad").exists()


def test_adversarial_training_logs_the_robust_accuracy_of_every_epoch(tiny_data, tmp_path):
  overrides = {"epochs": "2", "adversarial.method": "fgsm", "adversarial.eps": "0.3", "adversarial.fraction": "1.0",
               "adversarial.eval_examples": "50", "adversarial.eval_steps": "3",
               "checkpoint.monitor": "eval_robust_accuracy"}
  _, workdir = _train_tiny(tmp_path, **overrides)
  lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [line["epoch"] for line in lines] == [1, 2]
  assert all(line["eval_robust_eps"] == 0.3 and 0.0 <= line["eval_robust_accuracy"] <= 1.0 for line in lines)
  # The last epoch's figure is PGD-3 (step 2.5·eps/3, the start drawn from (seed, epoch)) on the first 50 eval
  # examples against the final network.
  run = runs.load_run(workdir, epoch=2)
  test = run.split("eval")
  x, y = run.inputs(test)[:50], jnp.asarray(test["label"][:50])
  key = jax.random.fold_in(jax.random.key(run.config.seed), 2)
  f = run.logits_fn()
  x_adv = attacks.pgd(f, x, y, eps=0.3, step_size=0.25, steps=3, key=key)
  assert lines[-1]["eval_robust_accuracy"] == pytest.approx(float(jnp.mean(jnp.argmax(f(x_adv), -1) == y)))

"""Ensembles: K vmapped members each trained as if alone, their figures, jdl train end to end, runs combined."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jdl.losses
import jdl.models
import jdl.regularizers
from jdl import cli
from jdl import ensemble
from jdl.train import experiment, runs, step
from jdl.train.state import create_train_state

# One worker runs this module, so that its module-scoped run is set up once (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("ensemble")

SMALL = ["--config.model.options.hidden=(8,)", "--config.data.batch_size=64", "--config.data.eval_batch_size=100",
         "--config.progress=false", "--config.checkpoint.every_seconds=0", "--config.epochs=2",
         "--config.tensorboard=false"]


def _batches(n, seed=0):
  rng = np.random.default_rng(seed)
  return [{"image": rng.integers(0, 256, (16, 28, 28, 1), dtype=np.uint8),
           "label": rng.integers(0, 10, 16).astype(np.int32)} for _ in range(n)]


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_each_member_trains_exactly_as_a_single_network_with_its_own_learning_rate(optimizer):
  member = jdl.models.create("mlp", num_classes=10, hidden=(8,))
  rates = (1e-2, 3e-2)
  make = lambda lr: jdl.optim.create(optimizer, learning_rate=lr)  # noqa: E731
  model = ensemble.Ensemble(member=member, members=2)
  tx = ensemble.ensemble_optimizer(make(rates[0]), 2, rates[0], rates)
  sample = jnp.zeros((1, 28, 28, 1))
  state = create_train_state(model, tx, sample, seed=0)
  penalty = jdl.regularizers.l2(1e-2)
  loss = jdl.losses.get("sparse_categorical_crossentropy")
  ens_step = jax.jit(step.make_train_step(apply_fn=model.apply, loss_fn=ensemble.member_loss(loss), tx=tx,
                                          regularizer=lambda p: penalty(p) / 2,
                                          example_metrics=ensemble.member_metrics(step.top1_correct)))
  singles = []
  for k, lr in enumerate(rates):
    params = jax.tree.map(lambda a, k=k: a[k], state.params)["members"]["member"]
    single_tx = make(lr)
    singles.append((state.replace(params=params, opt_state=single_tx.init(params)),
                    jax.jit(step.make_train_step(apply_fn=member.apply, loss_fn=loss, tx=single_tx,
                                                 regularizer=penalty))))
  for batch in _batches(3):
    state, metrics = ens_step(state, batch)
    singles = [(s(one, batch)[0], s) for one, s in singles]
  for k, (one, _) in enumerate(singles):
    got = jax.tree.map(lambda a, k=k: a[k], state.params)["members"]["member"]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7), got, one.params)
  # The members differ (their own initialisations), and the ensemble's loss is the mean of theirs.
  w = state.params["members"]["member"]["Dense_0"]["kernel"]
  assert not np.allclose(w[0], w[1])
  assert set(metrics) == {"loss", "objective", "accuracy"}


def test_evaluation_is_the_mean_of_the_members_probabilities():
  member = jdl.models.create("mlp", num_classes=10, hidden=(8,))
  model = ensemble.Ensemble(member=member, members=3)
  x = jax.random.normal(jax.random.key(1), (5, 28, 28, 1))
  variables = model.init(jax.random.key(0), x)
  logits_KxBxC = model.apply(variables, x, per_member=True)
  assert logits_KxBxC.shape == (3, 5, 10)
  mean = np.mean(jax.nn.softmax(logits_KxBxC, axis=-1), axis=0)
  np.testing.assert_allclose(np.exp(model.apply(variables, x)), mean, rtol=1e-5)
  np.testing.assert_allclose(jax.nn.softmax(model.apply(variables, x)), mean, rtol=1e-5)


def test_figures_by_hand():
  # 3 members, 4 examples, 3 classes. Predicted classes: member 0 [0, 1, 2, 0], member 1 [0, 1, 1, 2],
  # member 2 [0, 2, 1, 1]; labels [0, 1, 1, 2].
  eye = np.eye(3) * 4.0
  predicted = np.array([[0, 1, 2, 0], [0, 1, 1, 2], [0, 2, 1, 1]])
  logits = eye[predicted]
  logits[0, 3] = [3.0, 0.0, 2.9]  # member 0 is unsure on example 3 (classes 0 and 2)
  out = ensemble.figures(logits, np.array([0, 1, 1, 2]), prefix="test_")
  assert out["test_member_accuracy"] == [0.5, 1.0, 0.5]
  assert out["test_best_member_accuracy"] == 1.0 and out["test_mean_member_accuracy"] == pytest.approx(2 / 3)
  # Votes: example 3 is a three-way tie (0, 2, 1): the mean probability decides, and class 2 has the most
  # (member 0's 2.9 logit and member 1's confident 2).
  assert out["test_vote_accuracy"] == 1.0
  # Pairs (0,1): examples 2, 3 differ; (0,2): 1, 2, 3; (1,2): 1, 3 -> (2 + 3 + 2) / 3 pairs / 4 examples.
  assert out["test_disagreement"] == pytest.approx(7 / 12)
  assert ensemble.accuracy_by_size(logits, np.array([0, 1, 1, 2]))[0] == 0.5


@pytest.fixture(scope="module")
def ensemble_run(tiny_dirs, tmp_path_factory):
  from conftest import use_tiny_data  # pylint: disable=g-import-not-at-top

  with pytest.MonkeyPatch.context() as patch:
    use_tiny_data(tiny_dirs, patch)
    run = tmp_path_factory.mktemp("ens") / "run"
    assert cli.main(["train", "mlp_fashion_mnist", "--workdir", str(run), *SMALL,
                     "--config.ensemble.members=3"]) == 0
    yield run


def test_jdl_train_trains_an_ensemble_in_one_checkpoint_and_reports_its_members(ensemble_run, tiny_data):
  summary = json.loads((ensemble_run / "summary.json").read_text())
  loaded = runs.load_run(ensemble_run)
  kernel = loaded.variables["params"]["members"]["member"]["Dense_0"]["kernel"]
  assert kernel.shape == (3, 784, 8)  # all members in one checkpoint
  test = loaded.split("test")
  x = loaded.inputs({"image": test["image"]})
  logits = np.asarray(loaded.model.apply(loaded.variables, x, per_member=True))
  expected = ensemble.figures(logits, test["label"], prefix="test_")
  for key in ("test_member_accuracy", "test_vote_accuracy", "test_disagreement", "test_best_member_accuracy"):
    assert summary[key] == pytest.approx(expected[key]), key
  assert summary["test_accuracy"] == pytest.approx(expected["test_accuracy"], abs=1e-6)
  probs = np.mean(jax.nn.softmax(logits, axis=-1), axis=0)
  nll = -np.mean(np.log(probs[np.arange(len(probs)), test["label"]]))
  assert summary["test_loss"] == pytest.approx(nll, rel=1e-4)  # the ensemble's cross-entropy
  line = json.loads((ensemble_run / "metrics.jsonl").read_text().splitlines()[-1])
  assert {"eval_member_0_accuracy", "eval_member_2_accuracy", "eval_vote_accuracy", "eval_disagreement"} <= set(line)


def test_separately_trained_runs_combine(ensemble_run, tiny_data, tmp_path, capsys):
  dirs = []
  for seed in (0, 1):
    dirs.append(tmp_path / f"seed{seed}")
    assert cli.main(["train", "mlp_fashion_mnist", "--workdir", str(dirs[-1]), *SMALL, f"--config.seed={seed}"]) == 0
  out = ensemble.combine_runs(dirs)
  singles = [json.loads((d / "summary.json").read_text())["test_accuracy"] for d in dirs]
  assert out["test_member_accuracy"] == pytest.approx(singles, abs=1e-6)
  assert out["accuracy_by_size"][0] == pytest.approx(singles[0], abs=1e-6)
  loaded = [runs.load_run(d) for d in dirs]
  probs = np.mean([r.predict(r.split("test")["image"])["probabilities"] for r in loaded], axis=0)
  assert out["test_accuracy"] == pytest.approx(np.mean(probs.argmax(-1) == loaded[0].split("test")["label"]))
  assert cli.main(["ensemble", *map(str, dirs)]) == 0
  assert f"ensemble (mean of probabilities): accuracy={out['test_accuracy']:.4f}" in capsys.readouterr().out
  with pytest.raises(ValueError, match="expected two or more run directories, got 1"):
    ensemble.combine_runs(dirs[:1])


@pytest.mark.parametrize("overrides, message", [
    (["--config.ensemble.members=0"], "ensemble.members: expected a whole number >= 1 (1: a single network), got 0"),
    (["--config.ensemble.members=2", "--config.ensemble.learning_rates=(1e-3,)"],
     "ensemble.learning_rates: expected one learning rate per member (2), got 1"),
    (["--config.ensemble.members=2", "--config.ensemble.learning_rates=(1e-3, -1.0)"],
     "ensemble.learning_rates: expected positive numbers, got -1.0"),
    (["--config.ensemble.members=2", "--config.diagnostics.enabled=true"],
     "ensemble.members=2 with diagnostics.enabled: not supported"),
])
def test_bad_ensemble_settings_are_clear_errors_before_compiling(tiny_data, tmp_path, capsys, overrides, message):
  assert cli.main(["train", "mlp_fashion_mnist", "--workdir", str(tmp_path / "run"), *SMALL, *overrides]) == 2
  assert message in capsys.readouterr().err
  assert not (tmp_path / "run").exists()


def test_an_ensemble_of_a_regression_is_refused(capsys, tmp_path):
  assert cli.main(["train", "diabetes_regression", "--workdir", str(tmp_path / "run"), "--config.progress=false",
                   "--config.ensemble.members=2"]) == 2
  assert "ensembles average class probabilities; expected a classification experiment" in capsys.readouterr().err

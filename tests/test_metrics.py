"""jdl.metrics against scikit-learn: one-shots, streaming, padding, merging across devices."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sklearn.metrics as skm
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import jdl.metrics as M

SEEDS = range(4)
N, C, L = 64, 5, 4


def _sk(fn, *args, **kwargs):
  """Calls scikit-learn with its own warnings silenced (pyproject makes warnings errors)."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    return fn(*args, **kwargs)


def _classification_data(seed):
  """Class 4 is never predicted, class 3 never a label; rounded scores make ties."""
  rng = np.random.default_rng(seed)
  y_true = rng.choice([0, 1, 2, 4], size=N)
  scores = rng.normal(size=(N, C)).astype(np.float32)
  scores[np.arange(N), y_true] += 1.0
  scores[:, 4] -= 100.0
  return y_true, scores, scores.argmax(1)


def _binary_data(seed):
  rng = np.random.default_rng(100 + seed)
  y = rng.integers(0, 2, size=N)
  scores = np.round(rng.normal(size=N) + y, 1).astype(np.float32)  # many ties
  return y, scores


def _multilabel_data(seed):
  rng = np.random.default_rng(200 + seed)
  y = (rng.random((N, L)) < 0.35).astype(np.int32)
  y[0] = 1  # every label has a positive
  y[1] = 0  # ... and a negative
  scores = np.round(rng.normal(size=(N, L)) + y, 1).astype(np.float32)
  return y, scores


def _regression_data(seed, outputs=None):
  rng = np.random.default_rng(300 + seed)
  shape = (N,) if outputs is None else (N, outputs)
  y = (rng.normal(size=shape) * 3 + 10).astype(np.float32)
  pred = (y + rng.normal(size=shape)).astype(np.float32)
  return y, pred


# --------------------------------------------------------------------------- #
# One-shot functions equal scikit-learn.
# --------------------------------------------------------------------------- #


def test_classification_one_shots_equal_sklearn():
  labels = list(range(C))
  for seed in SEEDS:
    y_true, scores, y_pred = _classification_data(seed)
    np.testing.assert_array_equal(M.confusion_matrix(y_true, y_pred, C),
                                  skm.confusion_matrix(y_true, y_pred, labels=labels))
    assert M.accuracy(y_true, y_pred) == skm.accuracy_score(y_true, y_pred)
    for average in (None, "macro", "micro", "weighted"):
      ours = M.precision_recall_f1(y_true, y_pred, C, average=average)
      ref = _sk(skm.precision_recall_fscore_support, y_true, y_pred, labels=labels, average=average,
                zero_division=0)[:3]
      for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    # the never-predicted and never-true classes score 0, not NaN
    precision, recall, f1 = M.precision_recall_f1(y_true, y_pred, C)
    assert precision[4] == recall[3] == f1[3] == f1[4] == 0.0
    for k in (1, 2, 3):
      tied = np.round(scores, 0)
      assert M.top_k_accuracy(y_true, tied, k) == pytest.approx(
          skm.top_k_accuracy_score(y_true, tied, k=k, labels=labels))
    report = M.classification_report(y_true, y_pred, C, class_names=["a", "b", "c", "d", "e"])
    assert report == _sk(skm.classification_report, y_true, y_pred, labels=labels,
                         target_names=["a", "b", "c", "d", "e"], zero_division=0)


def test_binary_average_is_class_one():
  y_true, y_pred = [0, 1, 1, 0, 1], [1, 1, 0, 0, 1]
  ours = M.precision_recall_f1(y_true, y_pred, 2, average="binary")
  ref = skm.precision_recall_fscore_support(y_true, y_pred, average="binary")[:3]
  np.testing.assert_allclose(ours, ref)


def test_curve_one_shots_equal_sklearn_with_ties():
  for seed in SEEDS:
    y, s = _binary_data(seed)
    assert M.roc_auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert M.average_precision(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    for ours, ref in zip(M.roc_curve(y, s), skm.roc_curve(y, s, drop_intermediate=False)):
      np.testing.assert_allclose(ours, ref)
    for ours, ref in zip(M.precision_recall_curve(y, s), skm.precision_recall_curve(y, s)):
      np.testing.assert_allclose(ours, ref)
    ym, sm = _multilabel_data(seed)
    assert M.average_precision(ym, sm) == pytest.approx(skm.average_precision_score(ym, sm), abs=1e-12)
    np.testing.assert_allclose(M.roc_auc(ym, sm, average=None), skm.roc_auc_score(ym, sm, average=None))


def test_hand_computed_auroc_with_ties():
  # positives {0.8, 0.4}, negatives {0.4, 0.1}: pairs (0.8>0.4, 0.8>0.1, 0.4=0.4 -> 1/2, 0.4>0.1) = 3.5/4
  assert M.roc_auc([1, 1, 0, 0], [0.8, 0.4, 0.4, 0.1]) == 0.875
  state = M.AUROC.empty(capacity=4).update(jnp.array([0.8, 0.4, 0.4, 0.1]), jnp.array([1, 1, 0, 0]))
  assert float(state.compute()) == 0.875


def test_single_class_auroc_is_nan_with_a_warning():
  with pytest.warns(M.MetricWarning, match="one class"):
    assert np.isnan(M.roc_auc([1, 1, 1], [0.1, 0.5, 0.7]))
  state = M.AUROC.empty(capacity=4).update(jnp.array([0.1, 0.5, 0.7, 0.2]), jnp.array([0, 0, 0, 0]))
  with pytest.warns(M.MetricWarning, match="one class"):
    assert np.isnan(state.compute())
  # inside jit: no warning possible, still NaN (not a crash)
  assert np.isnan(jax.jit(lambda s: s.compute())(state))
  # AP without positives is 0, as scikit-learn
  with pytest.warns(M.MetricWarning, match="no positive"):
    assert M.average_precision([0, 0, 0], [0.1, 0.5, 0.7]) == _sk(skm.average_precision_score, [0, 0, 0],
                                                                    [0.1, 0.5, 0.7])


def test_regression_one_shots_equal_sklearn():
  for seed in SEEDS:
    for outputs in (None, 3):
      y, pred = _regression_data(seed, outputs)
      for ours, ref in ((M.mean_absolute_error, skm.mean_absolute_error),
                        (M.mean_squared_error, skm.mean_squared_error),
                        (M.root_mean_squared_error, skm.root_mean_squared_error),
                        (M.r2_score, skm.r2_score)):
        assert ours(y, pred) == pytest.approx(ref(y.astype(np.float64), pred.astype(np.float64)), rel=1e-12), (
            ours.__name__, outputs)
  # constant targets: scikit-learn's force_finite convention
  assert M.r2_score([2.0, 2.0], [2.0, 2.0]) == skm.r2_score([2.0, 2.0], [2.0, 2.0]) == 1.0
  assert M.r2_score([2.0, 2.0], [2.0, 3.0]) == skm.r2_score([2.0, 2.0], [2.0, 3.0]) == 0.0


def test_r2_is_stable_for_targets_with_a_large_offset():
  rng = np.random.default_rng(0)
  y = 1e4 + rng.normal(size=256)
  pred = y + 0.5 * rng.normal(size=256)
  state = M.R2Score.empty()
  for chunk in np.array_split(np.arange(256), 7):
    state = state.update(jnp.asarray(pred[chunk], jnp.float32), jnp.asarray(y[chunk], jnp.float32))
  # the float32 rounding of y itself (~5e-4 at 1e4) limits the agreement
  assert float(state.compute()) == pytest.approx(skm.r2_score(y, pred), abs=2e-3)


def test_ranking_at_k_equals_hand_computation():
  for seed in SEEDS:
    y, s = _multilabel_data(seed)
    y[2] = 0  # an example with no relevant label: skipped by recall@k
    for k in (1, 3):
      top = np.argsort(-s, axis=1, kind="stable")[:, :k]
      hits = np.take_along_axis(y, top, axis=1).sum(1)
      relevant = y.sum(1)
      precision = M.PrecisionAtK.empty(k=k).update(jnp.asarray(s), jnp.asarray(y)).compute()
      recall = M.RecallAtK.empty(k=k).update(jnp.asarray(s), jnp.asarray(y)).compute()
      assert float(precision) == pytest.approx(np.mean(hits / k), rel=1e-6)
      assert float(recall) == pytest.approx(np.mean(hits[relevant > 0] / relevant[relevant > 0]), rel=1e-6)


# --------------------------------------------------------------------------- #
# States: streaming, padding, jit/scan.
# --------------------------------------------------------------------------- #


def _references(seed):
  """{name: (empty state, (outputs, labels), scikit-learn value)}."""
  y_true, scores, y_pred = _classification_data(seed)
  yb, sb = _binary_data(seed)
  ym, sm = _multilabel_data(seed)
  yr, pr = _regression_data(seed)
  y_ovr = y_true.copy()
  y_ovr[:4] = 3  # one-vs-rest AUROC needs every class present
  labels = list(range(C))
  prf = lambda average: _sk(skm.precision_recall_fscore_support, y_true, y_pred, labels=labels,
                            average=average, zero_division=0)
  logits = scores.astype(np.float64)
  logits[:, 4] += 100.0  # undo the shift that keeps class 4 from being predicted
  softmax = np.exp(logits - logits.max(1, keepdims=True))
  softmax = (softmax / softmax.sum(1, keepdims=True)).astype(np.float32)
  return {
      "accuracy": (M.get("accuracy"), (scores, y_true), skm.accuracy_score(y_true, y_pred)),
      "top3_accuracy": (M.get("top3_accuracy"), (scores, y_true),
                        skm.top_k_accuracy_score(y_true, scores, k=3, labels=labels)),
      "confusion_matrix": (M.get("confusion_matrix", num_classes=C), (scores, y_true),
                           skm.confusion_matrix(y_true, y_pred, labels=labels)),
      # the averages share the one-shots' code, checked for every average above
      "recall_weighted": (M.get("recall", num_classes=C, average="weighted"), (scores, y_true),
                          prf("weighted")[1]),
      "f1_per_class": (M.get("f1", num_classes=C, average=None), (scores, y_true), prf(None)[2]),
      "auroc": (M.get("auroc", capacity=N), (sb, yb), skm.roc_auc_score(yb, sb)),
      "auroc_ovr": (M.get("roc_auc", capacity=N, num_labels=C), (softmax, y_ovr),
                    skm.roc_auc_score(y_ovr, softmax.astype(np.float64), multi_class="ovr", labels=labels)),
      "average_precision": (M.get("average_precision", capacity=N), (sb, yb), skm.average_precision_score(yb, sb)),
      "map": (M.get("map", capacity=N, num_labels=L), (sm, ym), skm.average_precision_score(ym, sm)),
      "mae": (M.get("mae"), (pr, yr), skm.mean_absolute_error(yr, pr)),
      "mse": (M.get("mse"), (pr, yr), skm.mean_squared_error(yr, pr)),
      "rmse": (M.get("rmse"), (pr, yr), skm.root_mean_squared_error(yr, pr)),
      "r2": (M.get("r2"), (pr, yr), skm.r2_score(yr, pr)),
  }


@jax.jit
def _update(states, data, mask=None):
  return {name: state.update(*data[name], mask) for name, state in states.items()}


@jax.jit
def _compute(states):
  return {name: state.compute() for name, state in states.items()}


def _split(cases):
  states = {name: state for name, (state, _, _) in cases.items()}
  data = {name: tuple(jnp.asarray(x) for x in d) for name, (_, d, _) in cases.items()}
  return states, data


def _assert_values(values, cases):
  for name, (_, _, ref) in cases.items():
    np.testing.assert_allclose(np.asarray(values[name], np.float64), ref, rtol=2e-5, atol=1e-6, err_msg=name)


def test_states_streamed_over_uneven_batches_equal_sklearn():
  cases = _references(0)
  states, data = _split(cases)
  for lo, hi in ((0, 31), (31, 62), (62, N)):  # uneven batches (31, 31, 2): two compiled shapes
    states = _update(states, jax.tree.map(lambda x, lo=lo, hi=hi: x[lo:hi], data))
  _assert_values(_compute(states), cases)


def test_padded_batches_ignore_masked_examples_in_jit_and_scan():
  """Batches padded to 16 with garbage; a lax.scan of updates equals scikit-learn."""
  cases = _references(1)
  states, data = _split(cases)
  batch, sizes = 16, np.array([11, 16, 3, 14, 9, 11])  # sums to N
  starts = np.cumsum(sizes) - sizes
  rng = np.random.default_rng(7)

  def pad(x):
    x = np.asarray(x)
    garbage = rng.integers(0, 2, size=(len(sizes), batch) + x.shape[1:]) * 7
    out = garbage.astype(x.dtype)
    for i, (start, size) in enumerate(zip(starts, sizes)):
      out[i, :size] = x[start:start + size]
    return jnp.asarray(out)

  mask = jnp.asarray(np.arange(batch)[None, :] < sizes[:, None])

  @jax.jit
  def run(states, data, mask):
    def step(states, inputs):
      return _update(states, *inputs), None
    return _compute(jax.lax.scan(step, states, (data, mask))[0])

  _assert_values(run(states, jax.tree.map(pad, data), mask), cases)


def _with_capacity(states, capacity):
  return {name: type(s).empty(capacity=capacity, num_labels=s.num_labels)
          if isinstance(s, M.AUROC | M.AveragePrecision) else s for name, s in states.items()}


def test_merge_of_batch_states_equals_one_pass():
  cases = _references(2)
  states, data = _split(cases)
  half = N // 2
  halves = _with_capacity(states, half)  # merged buffers then have capacity N
  left = _update(halves, jax.tree.map(lambda x: x[:half], data))
  right = _update(halves, jax.tree.map(lambda x: x[half:], data))
  _assert_values(_compute({name: left[name].merge(right[name]) for name in cases}), cases)
  _assert_values(_compute(M.merge_stacked(jax.tree.map(lambda a, b: jnp.stack([a, b]), left, right))), cases)
  # a merged buffer keeps accepting updates, in order, after the merged data
  grown = left["auroc"].merge(M.AUROC.empty(capacity=half)).update(*jax.tree.map(lambda x: x[half:], data["auroc"]))
  np.testing.assert_allclose(grown.compute(), cases["auroc"][2], rtol=2e-5)


def test_merge_across_8_devices_equals_single_device():
  assert jax.device_count() == 8
  mesh = jax.make_mesh((8,), ("data",))
  cases = _references(3)
  states, data = _split(cases)
  # buffer metrics get a per-device capacity; merging concatenates the buffers (capacity N again)
  local_states = _with_capacity(states, N // 8)
  mask = jnp.asarray(np.random.default_rng(0).random(N) < 0.8)  # padding on the devices

  @jax.jit
  @jax.shard_map(mesh=mesh, in_specs=P("data"), out_specs=P())
  def evaluate(data, mask):
    return M.merge_across(_update(local_states, data, mask), "data")

  merged = _compute(evaluate(*jax.device_put((data, mask), NamedSharding(mesh, P("data")))))
  single = _compute(_update(states, data, mask))
  for name in cases:
    np.testing.assert_allclose(merged[name], single[name], rtol=2e-5, atol=1e-6, err_msg=name)
  # and the single-device masked value is scikit-learn's on the real examples
  keep = np.asarray(mask)
  np.testing.assert_allclose(single["auroc"], skm.roc_auc_score(cases["auroc"][1][1][keep],
                                                                cases["auroc"][1][0][keep]), rtol=2e-5)
  np.testing.assert_allclose(single["r2"], skm.r2_score(cases["r2"][1][1][keep], cases["r2"][1][0][keep]),
                             rtol=2e-5)


def test_buffer_overflow_gives_nan_and_a_warning():
  state = M.AUROC.empty(capacity=4).update(jnp.array([0.1, 0.9, 0.3, 0.7]), jnp.array([0, 1, 0, 1]))
  state = state.update(jnp.array([0.1, 0.9, 0.3, 0.7]), jnp.array([0, 1, 0, 1]), jnp.array([1, 0, 0, 0]))
  assert int(state.dropped) == 1 and int(state.count) == 4
  with pytest.warns(M.MetricWarning, match="capacity"):
    assert np.isnan(state.compute())


def test_state_curves_equal_one_shot_curves():
  y, s = _binary_data(0)
  state = M.AveragePrecision.empty(capacity=2 * N).update(jnp.asarray(s), jnp.asarray(y))
  for ours, ref in zip(state.roc_curve(), skm.roc_curve(y, s, drop_intermediate=False)):
    np.testing.assert_allclose(ours, ref)
  for ours, ref in zip(state.precision_recall_curve(), skm.precision_recall_curve(y, s)):
    np.testing.assert_allclose(ours, ref)


# --------------------------------------------------------------------------- #
# Registry, logging, report, plot, errors.
# --------------------------------------------------------------------------- #


def test_registry_collection_and_compute_all():
  assert M.get("top5_accuracy").k == 5
  assert M.get("precision_at_3").k == 3
  assert isinstance(M.get("roc_auc", capacity=4), M.AUROC)
  with pytest.raises(ValueError, match="unknown metric 'acuracy'.*accuracy"):
    M.get("acuracy")
  with pytest.raises(TypeError, match="num_classes"):
    M.get("f1")  # num_classes missing
  with pytest.raises(TypeError, match="it takes: k"):
    M.get("top_k_accuracy", num_classes=3)
  states = M.collection(["accuracy", "precision", "f1", "top2_accuracy"], num_classes=3, average="macro")
  assert sorted(states) == ["accuracy", "f1_macro", "precision_macro", "top2_accuracy"]
  with pytest.raises(TypeError, match="capacity"):
    M.collection(["accuracy"], capacity=3)
  logits = jnp.array([[3.0, 2.0, 0.0], [0.0, 2.0, 1.0], [0.0, 0.0, 2.0], [1.0, 0.0, 0.0]])
  labels = jnp.array([1, 1, 2, 2])
  states = M.update_all(states, logits, labels)
  states["per_class_recall"] = M.get("recall", num_classes=3, average=None).update(logits, labels)
  logged = M.compute_all(states, class_names=["a", "b", "c"])
  # predictions [0, 1, 2, 0]; in the last row classes 1 and 2 tie and, as in scikit-learn, the higher
  # index ranks first, so label 2 is in the top 2
  assert logged == pytest.approx({
      "accuracy": 0.5, "top2_accuracy": 1.0, "precision_macro": (0 + 1 + 1) / 3, "f1_macro": (0 + 2 / 3 + 2 / 3) / 3,
      "per_class_recall_a": 0.0, "per_class_recall_b": 0.5, "per_class_recall_c": 0.5})
  assert all(isinstance(v, float) for v in logged.values())


def test_plot_confusion_matrix(tmp_path):
  import matplotlib.figure

  cm = np.array([[3, 1], [0, 0]])
  path = tmp_path / "cm.png"
  fig = M.plot_confusion_matrix(cm, ["neg", "pos"], normalize="true", path=str(path))
  assert isinstance(fig, matplotlib.figure.Figure)
  assert path.read_bytes()[:4] == b"\x89PNG"
  texts = [t.get_text() for t in fig.axes[0].texts]
  assert texts == ["0.75", "0.25", "0.00", "0.00"]  # the empty row stays 0, not NaN
  assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["neg", "pos"]
  fig = M.plot_confusion_matrix(cm)
  assert [t.get_text() for t in fig.axes[0].texts] == ["3", "1", "0", "0"]
  with pytest.raises(ValueError, match="normalize"):
    M.plot_confusion_matrix(cm, normalize="rows")


def test_bad_inputs_name_the_argument():
  with pytest.raises(ValueError, match=r"y_pred must lie in \[0, num_classes=3\).*\[0, 3\]"):
    M.confusion_matrix([0, 1], [0, 3], num_classes=3)
  with pytest.raises(ValueError, match="same length"):
    M.precision_recall_f1([0, 1], [0, 1, 1], num_classes=2)
  with pytest.raises(ValueError, match="average must be one of"):
    M.precision_recall_f1([0, 1], [0, 1], num_classes=2, average="samples")
  with pytest.raises(TypeError, match="num_classes must be an int"):
    M.confusion_matrix([0], [0], num_classes=2.0)
  with pytest.raises(ValueError, match="outputs have 4 classes .* num_classes=3"):
    M.ConfusionMatrix.empty(num_classes=3).update(jnp.zeros((2, 4)), jnp.array([0, 1]))
  with pytest.raises(ValueError, match=r"mask must have shape \(2,\)"):
    M.Accuracy.empty().update(jnp.zeros((2, 4)), jnp.array([0, 1]), jnp.ones((3,)))
  with pytest.raises(ValueError, match="k=6 exceeds the number of classes 4"):
    M.TopKAccuracy.empty(k=6).update(jnp.zeros((2, 4)), jnp.array([0, 1]))
  with pytest.raises(ValueError, match="binary"):
    M.roc_auc([0, 2], [0.1, 0.2])
  with pytest.raises(ValueError, match=r"num_labels=3\]"):
    M.AUROC.empty(capacity=4, num_labels=3).update(jnp.zeros((2, 4)), jnp.zeros((2, 4)))
  with pytest.raises(ValueError, match="cannot merge"):
    M.Accuracy.empty().merge(M.get("f1", num_classes=2))
  with pytest.raises(ValueError, match="class_names must have num_classes=2 entries, got 3"):
    M.classification_report([0, 1], [0, 1], 2, class_names=["a", "b", "c"])

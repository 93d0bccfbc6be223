"""jdl.losses: reference formulas, gradients, stability, registry and combinators."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jdl.losses as L
import jdl.regularizers

B, C = 6, 4


def _data(seed):
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(B, C)).astype(np.float32) * 2
  labels = rng.integers(0, C, size=B)
  soft = rng.random((B, C)).astype(np.float32)
  soft /= soft.sum(1, keepdims=True)
  return logits, labels, soft


def _log_softmax(x):
  x = np.asarray(x, np.float64)
  return x - x.max(-1, keepdims=True) - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True))


def _bce_reference(z, y):
  p = 1 / (1 + np.exp(-np.asarray(z, np.float64)))
  return -y * np.log(p) - (1 - y) * np.log(1 - p)


def test_cross_entropies_equal_reference_formulas():
  for seed in range(3):
    logits, labels, soft = _data(seed)
    onehot = np.eye(C)[labels]
    ref = -(onehot * _log_softmax(logits)).sum(-1)
    np.testing.assert_allclose(L.sparse_categorical_crossentropy(logits, labels), ref, rtol=1e-5)
    np.testing.assert_allclose(L.categorical_crossentropy(logits, onehot), ref, rtol=1e-5)
    np.testing.assert_allclose(L.categorical_crossentropy(logits, soft), -(soft * _log_softmax(logits)).sum(-1),
                               rtol=1e-5)
    # label smoothing: y <- (1 - s) y + s / C
    smoothed = 0.9 * onehot + 0.1 / C
    ref_smooth = -(smoothed * _log_softmax(logits)).sum(-1)
    np.testing.assert_allclose(L.categorical_crossentropy(logits, onehot, label_smoothing=0.1), ref_smooth, rtol=1e-5)
    np.testing.assert_allclose(L.sparse_categorical_crossentropy(logits, labels, label_smoothing=0.1), ref_smooth,
                               rtol=1e-5)
    # from probabilities (softmax outputs) gives the same value
    probs = np.exp(_log_softmax(logits)).astype(np.float32)
    np.testing.assert_allclose(L.categorical_crossentropy(probs, soft, from_logits=False),
                               L.categorical_crossentropy(logits, soft), rtol=1e-5)
    np.testing.assert_allclose(L.sparse_categorical_crossentropy(probs, labels, from_logits=False), ref, rtol=1e-5)
    # binary and multi-label
    z, y = logits[:, 0], (labels % 2).astype(np.float32)
    np.testing.assert_allclose(L.binary_crossentropy(z, y), _bce_reference(z, y), rtol=1e-5)
    np.testing.assert_allclose(L.binary_crossentropy(z[:, None], y[:, None]), _bce_reference(z, y), rtol=1e-5)
    sig = (1 / (1 + np.exp(-z))).astype(np.float32)
    np.testing.assert_allclose(L.binary_crossentropy(sig, y, from_logits=False), _bce_reference(z, y), rtol=1e-4)
    np.testing.assert_allclose(L.binary_crossentropy(z, y, label_smoothing=0.2), _bce_reference(z, 0.8 * y + 0.1),
                               rtol=1e-5)
    multi = (soft > 0.25).astype(np.float32)
    per_label = _bce_reference(logits, multi)
    np.testing.assert_allclose(L.multilabel_binary_crossentropy(logits, multi), per_label.mean(1), rtol=1e-5)
    np.testing.assert_allclose(L.multilabel_binary_crossentropy(logits, multi, reduction="sum"), per_label.sum(1),
                               rtol=1e-5)


def test_hand_computed_values():
  np.testing.assert_allclose(L.sparse_categorical_crossentropy(jnp.zeros((1, 4)), jnp.array([3])), [np.log(4)])
  np.testing.assert_allclose(L.binary_crossentropy(jnp.array([0.0]), jnp.array([1.0])), [np.log(2)])
  # hinge: max(0, 1 - t f) with {0,1} or {-1,+1} labels
  f = jnp.array([0.3, -2.0, 0.5, 2.0])
  np.testing.assert_allclose(L.hinge(f, jnp.array([1, 0, 0, 1])), [0.7, 0.0, 1.5, 0.0], rtol=1e-6)
  np.testing.assert_array_equal(L.hinge(f, jnp.array([1, 0, 0, 1])), L.hinge(f, jnp.array([1, -1, -1, 1])))
  # Crammer-Singer: max_c(z_c + [c != y]) - z_y
  np.testing.assert_allclose(L.multiclass_hinge(jnp.array([[2.0, 1.5, 0.0], [0.0, 3.0, 0.0]]), jnp.array([0, 0])),
                             [0.5, 4.0])


def test_regression_losses_equal_reference_formulas():
  rng = np.random.default_rng(0)
  pred = rng.normal(size=(B, 3)).astype(np.float32) * 2
  target = rng.normal(size=(B, 3)).astype(np.float32)
  err = pred.astype(np.float64) - target
  np.testing.assert_allclose(L.mse(pred, target), (err ** 2).mean(1), rtol=1e-5)
  np.testing.assert_allclose(L.rmse(pred, target), np.sqrt((err ** 2).mean(1)), rtol=1e-5)
  np.testing.assert_allclose(L.mae(pred, target), np.abs(err).mean(1), rtol=1e-5)
  for delta in (0.5, 1.0, 2.0):
    a = np.abs(err)
    huber = np.where(a <= delta, 0.5 * a ** 2, delta * (a - 0.5 * delta))
    np.testing.assert_allclose(L.huber(pred, target, delta=delta), huber.mean(1), rtol=1e-5)
  # a [B, 1] head against [B] targets is not broadcast to [B, B]
  np.testing.assert_allclose(L.mse(pred[:, :1], target[:, 0]), err[:, 0] ** 2, rtol=1e-5)
  with pytest.raises(ValueError, match=r"predictions \(6, 3\) and targets \(6,\)"):
    L.mse(pred, target[:, 0])


def test_gradients_match_finite_differences():
  logits, labels, soft = _data(1)
  logits = jnp.asarray(logits)
  y = jnp.asarray((labels % 2).astype(np.float32))
  target = jnp.asarray(soft)
  cases = [
      lambda z: L.categorical_crossentropy(z, target, label_smoothing=0.1),
      lambda z: L.sparse_categorical_crossentropy(z, jnp.asarray(labels)),
      lambda z: L.binary_crossentropy(z[:, 0], y),
      lambda z: L.binary_crossentropy(jax.nn.sigmoid(z[:, 0]), y, from_logits=False),
      lambda z: L.multilabel_binary_crossentropy(z, target > 0.25),
      lambda z: L.mse(z, target),
      lambda z: L.rmse(z, target),
      lambda z: L.mae(z, target),
      lambda z: L.huber(z, target, delta=0.7),
      lambda z: L.hinge(z[:, 0] * 0.3, y),
  ]
  for fn in cases:
    check_grads(lambda z, fn=fn: jnp.sum(fn(z)), (logits,), order=1, modes=("rev",), atol=5e-2, rtol=5e-2)
  # analytic gradients: softmax - y for CCE, sigmoid - y for BCE
  grad = jax.grad(lambda z: jnp.sum(L.categorical_crossentropy(z, target)))(logits)
  np.testing.assert_allclose(grad, jax.nn.softmax(logits) - target, atol=1e-6)
  grad = jax.grad(lambda z: jnp.sum(L.binary_crossentropy(z, y)))(logits[:, 0])
  np.testing.assert_allclose(grad, jax.nn.sigmoid(logits[:, 0]) - y, atol=1e-6)
  # rmse at exactly zero error: gradient 0, not NaN
  assert float(jax.grad(lambda p: L.rmse(p, jnp.ones((1, 2)))[0])(jnp.ones((1, 2))).sum()) == 0.0


def test_binary_crossentropy_is_finite_for_huge_logits():
  z = jnp.array([1e4, -1e4, 1e4, -1e4])
  y = jnp.array([1.0, 0.0, 0.0, 1.0])
  value, grad = jax.value_and_grad(lambda z: jnp.sum(L.binary_crossentropy(z, y)))(z)
  np.testing.assert_array_equal(L.binary_crossentropy(z, y), [0.0, 0.0, 1e4, 1e4])
  np.testing.assert_array_equal(grad, [0.0, 0.0, 1.0, -1.0])  # sigmoid(z) - y
  assert np.isfinite(value)
  grad = jax.grad(lambda z: jnp.sum(L.multilabel_binary_crossentropy(z, jnp.array([[1.0, 0.0]]))))(
      jnp.array([[-1e4, 1e4]]))
  np.testing.assert_array_equal(grad, [[-0.5, 0.5]])


def test_one_hot_and_multi_hot():
  np.testing.assert_array_equal(L.one_hot(jnp.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
  expected = [[1, 0, 1], [0, 0, 0], [0, 1, 0]]
  np.testing.assert_array_equal(L.multi_hot([[0, 2], [], [1, 1]], 3), expected)
  np.testing.assert_array_equal(L.multi_hot(jnp.array([[0, 2], [-1, -1], [1, -1]]), 3), expected)
  np.testing.assert_array_equal(jax.jit(L.multi_hot, static_argnums=1)(jnp.array([[2, -1]]), 3), [[0, 0, 1]])
  with pytest.raises(ValueError, match=r"one_hot: labels must lie in \[0, num_classes=3\), got values in \[0, 3\]"):
    L.one_hot(jnp.array([0, 3]), 3)
  with pytest.raises(TypeError, match="num_classes must be an int, got float"):
    L.one_hot(jnp.array([0]), 3.0)
  with pytest.raises(ValueError, match="multi_hot: class ids must lie"):
    L.multi_hot([[0, 5]], 3)


def test_registry_builds_batch_losses_with_options():
  logits, labels, _ = _data(2)
  batch = {"label": jnp.asarray(labels), "mask": jnp.ones(B)}
  np.testing.assert_array_equal(L.get("sparse_categorical_crossentropy")(logits, batch),
                                L.sparse_categorical_crossentropy(logits, batch["label"]))
  np.testing.assert_array_equal(L.get("sparse_categorical_crossentropy", label_smoothing=0.2)(logits, batch),
                                L.sparse_categorical_crossentropy(logits, batch["label"], label_smoothing=0.2))
  np.testing.assert_array_equal(L.get("huber", delta=2.0)(logits, {"label": jnp.zeros((B, C))}),
                                L.huber(logits, jnp.zeros((B, C)), delta=2.0))
  for name in ("binary_crossentropy", "categorical_crossentropy", "multilabel_binary_crossentropy", "mse", "rmse",
               "mae", "huber", "hinge"):
    assert name in L.list_losses()
  custom = lambda outputs, batch: jnp.abs(outputs - batch["label"])
  assert L.get(custom) is custom
  with pytest.raises(ValueError, match="unknown loss 'cross_entropy'; known losses: binary_crossentropy, "):
    L.get("cross_entropy")
  with pytest.raises(TypeError, match="does not take option.*smoothing; it takes: from_logits, label_smoothing"):
    L.get("binary_crossentropy", smoothing=0.1)
  with pytest.raises(ValueError, match="label_smoothing must be in"):
    L.get("categorical_crossentropy", label_smoothing=1.5)(logits, {"label": jnp.zeros((B, C))})
  with pytest.raises(ValueError, match="already registered"):
    L.register("mse", custom)


def test_masked_mean_ignores_padding():
  values = jnp.array([1.0, 3.0, 100.0])
  assert float(L.masked_mean(values, jnp.array([1, 1, 0]))) == 2.0
  assert float(L.masked_mean(values, jnp.zeros(3))) == 0.0
  assert float(L.masked_mean(values)) == pytest.approx(104 / 3)
  np.testing.assert_allclose(L.masked_mean(jnp.ones((2, 3)) * jnp.array([[1.0], [5.0]]), jnp.array([0, 1])), 5.0)
  with pytest.raises(ValueError, match=r"mask shape must be a prefix .* got mask \(2,\)"):
    L.masked_mean(values, jnp.ones(2))


def test_weighted_multi_head_loss():
  rng = np.random.default_rng(3)
  outputs = {"cls": jnp.asarray(rng.normal(size=(B, C)), jnp.float32),
             "box": jnp.asarray(rng.normal(size=(B, 2)), jnp.float32)}
  batch = {"label": {"cls": jnp.asarray(rng.integers(0, C, B)), "box": jnp.zeros((B, 2))}, "mask": jnp.ones(B)}
  loss_fn = L.weighted({"cls": "sparse_categorical_crossentropy", "box": L.get("huber", delta=0.5)}, {"box": 0.25})
  total, heads = loss_fn.with_heads(outputs, batch)
  np.testing.assert_allclose(heads["cls"], L.sparse_categorical_crossentropy(outputs["cls"], batch["label"]["cls"]))
  np.testing.assert_allclose(heads["box"], L.huber(outputs["box"], jnp.zeros((B, 2)), delta=0.5))
  np.testing.assert_allclose(total, heads["cls"] + 0.25 * heads["box"], rtol=1e-6)
  np.testing.assert_array_equal(loss_fn(outputs, batch), total)
  with pytest.raises(ValueError, match="weights has head.*cls2"):
    L.weighted({"cls": "mse"}, {"cls2": 1.0})
  with pytest.raises(ValueError, match=r"outputs lack head\(s\) box"):
    loss_fn({"cls": outputs["cls"]}, batch)
  with pytest.raises(ValueError, match=r"no target for output 'cls'.*the batch has \['label'\]"):
    loss_fn(outputs, {"label": batch["label"]["cls"]})
  with pytest.raises(ValueError, match=r"batch\['label'\] has no target for output 'box'"):
    loss_fn(outputs, {"label": {"cls": batch["label"]["cls"]}})
  # A flat batch (as datasets and the pipeline hold it): each head's targets under its own name.
  flat = {"cls": batch["label"]["cls"], "box": batch["label"]["box"], "mask": batch["mask"]}
  np.testing.assert_array_equal(loss_fn(outputs, flat), total)


def test_with_regularizer_adds_the_penalty_once_per_batch():
  params = {"Dense_0": {"kernel": jnp.array([[1.0], [-2.0]]), "bias": jnp.array([5.0])}}

  def model(params, x):
    return x @ params["Dense_0"]["kernel"][:, 0] + params["Dense_0"]["bias"][0]

  objective = L.with_regularizer("mse", jdl.regularizers.l2(0.1))
  x = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
  batch = {"label": jnp.zeros(3), "mask": jnp.array([1.0, 1.0, 0.0])}
  (total, aux), grads = jax.value_and_grad(lambda p: objective(p, model(p, x), batch), has_aux=True)(params)
  # data: predictions [6, 3] (third example padded) -> (36 + 9) / 2; penalty 0.1 / 2 * (1 + 4), bias excluded
  assert float(aux["loss"]) == pytest.approx(22.5)
  assert float(aux["regularization"]) == pytest.approx(0.25)
  assert float(total) == pytest.approx(22.75)
  # gradient of the penalty is lambda * w on the kernel only
  data_grads = jax.grad(lambda p: L.masked_mean(L.mse(model(p, x), batch["label"]), batch["mask"]))(params)
  np.testing.assert_allclose(grads["Dense_0"]["kernel"], data_grads["Dense_0"]["kernel"] + 0.1 * params["Dense_0"]["kernel"],
                             rtol=1e-6)
  np.testing.assert_allclose(grads["Dense_0"]["bias"], data_grads["Dense_0"]["bias"])
  # per batch, not per example: repeating the batch changes nothing
  x2 = jnp.concatenate([x, x])
  batch2 = {"label": jnp.zeros(6), "mask": jnp.concatenate([batch["mask"]] * 2)}
  assert float(objective(params, model(params, x2), batch2)[0]) == pytest.approx(22.75)
  assert float(L.with_regularizer("mse", None)(params, model(params, x), batch)[0]) == pytest.approx(22.5)


def test_bad_shapes_and_dtypes_are_named():
  with pytest.raises(ValueError, match=r"labels must have the logits' shape without the class axis; got logits "
                                       r"\(2, 3\) and labels \(3,\)"):
    L.sparse_categorical_crossentropy(jnp.zeros((2, 3)), jnp.array([0, 1, 2]))
  with pytest.raises(TypeError, match="labels must be integer class ids, got dtype float32"):
    L.sparse_categorical_crossentropy(jnp.zeros((2, 3)), jnp.zeros(2))
  # Out-of-range labels: checked on concrete arrays, before anything is traced.
  with pytest.raises(ValueError, match=r"labels must lie in \[0, C=3\) for logits \(2, 3\); got labels \(2,\) "
                                       r"with values in \[0, 3\]"):
    L.sparse_categorical_crossentropy(jnp.zeros((2, 3)), jnp.array([0, 3]))
  with pytest.raises(ValueError, match=r"values in \[-1, 1\]"):
    L.get("sparse_categorical_crossentropy")(jnp.zeros((2, 3)), {"label": jnp.array([-1, 1])})
  with pytest.raises(ValueError, match=r"categorical_crossentropy: labels must be one-hot.*\(2, 3\).*\(2,\)"):
    L.categorical_crossentropy(jnp.zeros((2, 3)), jnp.array([0, 1]))
  with pytest.raises(ValueError, match=r"binary_crossentropy: .*got outputs \(2, 3\) and labels \(2,\)"):
    L.binary_crossentropy(jnp.zeros((2, 3)), jnp.zeros(2))
  with pytest.raises(TypeError, match="outputs must be a floating-point array, got dtype int32"):
    L.binary_crossentropy(jnp.array([1, 0]), jnp.array([1, 0]))
  with pytest.raises(ValueError, match="reduction must be 'mean' or 'sum', got 'max'"):
    L.multilabel_binary_crossentropy(jnp.zeros((2, 3)), jnp.zeros((2, 3)), reduction="max")
  with pytest.raises(ValueError, match="delta must be > 0"):
    L.huber(jnp.zeros(2), jnp.zeros(2), delta=0.0)


def test_labels_closed_over_by_a_jitted_function_are_checked_on_the_host():
  labels = jnp.array([0, 2])  # a constant of the traced function: its range is checked without tracing
  total = jax.jit(lambda z: jdl.losses.sparse_categorical_crossentropy(z, labels).sum())(jnp.zeros((2, 3)))
  np.testing.assert_allclose(total, 2 * np.log(3.0), rtol=1e-6)
  bad = jnp.array([0, 3])  # made outside the trace: a constant of it, checked
  with pytest.raises(ValueError, match=r"labels must lie in \[0, C=3\)"):
    jax.jit(lambda z: jdl.losses.sparse_categorical_crossentropy(z, bad).sum())(jnp.zeros((2, 3)))

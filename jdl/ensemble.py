"""Ensembles: K networks trained in one compiled program, and separately trained runs combined.

``config.ensemble.members = K`` makes ``jdl train`` train K copies of the
experiment's model side by side: :class:`Ensemble` stacks their parameters
(and BatchNorm statistics) along a leading axis of size K and runs them with
``flax.linen.vmap``, so one step updates all of them in one XLA program.
Members start from different random initialisations and draw different
dropout masks; they see the same batches. Each member is trained on its own
loss, exactly as if alone (the objective is the mean of the members' losses
and the optimizer scales the gradient back by K; see :func:`ensemble_optimizer`),
optionally with its own learning rate (``config.ensemble.learning_rates``).

At evaluation the ensemble predicts the **mean of the members' probabilities**
(its outputs are the logarithms of those means, so the loss is the ensemble's
cross-entropy and every metric is the ensemble's). ``jdl train`` also logs,
every epoch and for the test split, each member's accuracy, the majority vote's
accuracy and the members' disagreement (:func:`figures`).

:func:`combine_runs` does the same for runs trained separately (``jdl ensemble
RUN_DIR ...``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jdl.train import callbacks as callbacks_lib

# Collections whose variables belong to one member each (stacked along the member axis).
_PER_MEMBER = ("params", "batch_stats", "activations", "intermediates", "quantization")


class _Call(nn.Module):
  """``member(x, train=train)`` with ``train`` fixed, so that ``nn.vmap`` maps over ``x`` alone."""

  member: nn.Module
  train: bool = False

  def __call__(self, x):
    return self.member(x, train=self.train)


class Ensemble(nn.Module):
  """``members`` copies of ``member`` with their own parameters, run side by side (``nn.vmap``).

  ``__call__(x, train)``: while training, every member's outputs, ``[K, B, C]``;
  at evaluation, ``log(mean_k softmax(logits_k))``, ``[B, C]`` (the ensemble's
  log-probabilities: a softmax of them gives back the mean probabilities).
  ``per_member=True`` returns the members' logits at evaluation too.
  Parameters live under ``members/member/…``, each with a leading axis of size K.
  """

  member: nn.Module
  members: int

  @nn.compact
  def __call__(self, x, train: bool = False, per_member: bool = False):
    stacked = nn.vmap(_Call, variable_axes={name: 0 for name in _PER_MEMBER},
                      split_rngs={"params": True, "dropout": True}, in_axes=None, out_axes=0,
                      axis_size=self.members)
    logits_KxBxC = stacked(self.member.clone(), train, name="members")(x)
    if train or per_member:
      return logits_KxBxC
    return mean_log_probs(logits_KxBxC)


def mean_log_probs(logits_KxBxC: jax.Array) -> jax.Array:
  """``log(mean_k softmax(logits_k))``: the log-probabilities of the members' mean prediction."""
  k = logits_KxBxC.shape[0]
  return jax.nn.logsumexp(jax.nn.log_softmax(logits_KxBxC, axis=-1), axis=0) - jnp.log(k)


def member_loss(loss_fn: Callable[[Any, Mapping[str, Any]], jax.Array]) -> Callable[..., jax.Array]:
  """``(outputs [K, B, C], batch) -> [B]``: the mean over members of each member's per-example loss."""

  def loss(outputs_KxBxC, batch):
    return jnp.mean(jax.vmap(lambda outputs: loss_fn(outputs, batch))(outputs_KxBxC), axis=0)

  return loss


def member_penalty(regularizer: Callable[[Any], jax.Array] | None, members: int) -> Callable[[Any], jax.Array] | None:
  """The parameter penalty as a share of the members' mean objective: the penalty of the stacked
  parameters (the sum of the members') over K, so that ``ensemble_optimizer``'s K brings each member
  its own penalty's gradient."""
  if regularizer is None:
    return None
  return lambda params: regularizer(params) / members


def member_metrics(example_metrics: Callable[..., Mapping[str, jax.Array]]) -> Callable[..., Mapping[str, jax.Array]]:
  """The per-step training metrics of the ensemble's prediction (the mean of the members' probabilities)."""
  return lambda outputs_KxBxC, batch: example_metrics(mean_log_probs(outputs_KxBxC), batch)


def scale_by_member(factors: Sequence[float]) -> optax.GradientTransformation:
  """Multiplies member k's updates by ``factors[k]`` (every leaf has the member axis first)."""
  f_K = jnp.asarray(factors, jnp.float32)

  def update_fn(updates, state, params=None):
    del params
    return jax.tree.map(lambda u: u * f_K.reshape((-1,) + (1,) * (u.ndim - 1)).astype(u.dtype), updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def ensemble_optimizer(tx: optax.GradientTransformation, members: int, learning_rate: float,
                       learning_rates: Sequence[float] = ()) -> optax.GradientTransformation:
  """``tx`` for an :class:`Ensemble` trained on the mean of its members' losses.

  The mean's gradient is member k's own gradient divided by K; ``scale(K)``
  first gives each member exactly the gradient it would get alone, so SGD,
  momentum and the adaptive methods update it as a single run would. With
  ``learning_rates``, member k's update is then multiplied by
  ``learning_rates[k] / learning_rate``: its own learning rate for every
  optimizer whose update is proportional to the learning rate (all of
  ``jdl.optim``'s), schedules included. ``clip_global_norm`` clips the
  ensemble's joint gradient norm.
  """
  parts = [optax.scale(float(members)), tx]
  if learning_rates:
    parts.append(scale_by_member([float(lr) / float(learning_rate) for lr in learning_rates]))
  return optax.chain(*parts)


def check(config: Any, task: str) -> int:
  """The number of members ``config.ensemble`` asks for (1: no ensemble); errors before anything compiles."""
  group = config.get("ensemble") or {}
  members = group.get("members", 1)
  if isinstance(members, bool) or not isinstance(members, int) or members < 1:
    raise ValueError(f"ensemble.members: expected a whole number >= 1 (1: a single network), got {members!r}")
  rates = tuple(group.get("learning_rates", ()) or ())
  if rates and len(rates) != members:
    raise ValueError(f"ensemble.learning_rates: expected one learning rate per member ({members}), got {len(rates)}: "
                     f"{rates!r}")
  for rate in rates:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not np.isfinite(rate) or rate <= 0:
      raise ValueError(f"ensemble.learning_rates: expected positive numbers, got {rate!r}")
  if members == 1:
    if rates:
      raise ValueError("ensemble.learning_rates: set ensemble.members to their number (it is 1)")
    return 1
  if task != "classification" or config.get("losses"):
    raise ValueError(f"ensemble.members={members}: ensembles average class probabilities; expected a classification "
                     f"experiment with one softmax output, got task {task!r}"
                     + (" with a dict of losses" if config.get("losses") else ""))
  refused = [(config.get("quantization", {}).get("enabled"), "quantization.enabled"),
             (config.get("diagnostics", {}).get("enabled"), "diagnostics.enabled"),
             (config.get("strategy") == "model_parallel", "strategy=model_parallel"),
             (bool(rates) and not float(config.optimizer.learning_rate), "optimizer.learning_rate=0")]
  for bad, name in refused:
    if bad:
      raise ValueError(f"ensemble.members={members} with {name}: not supported; train the members as separate runs "
                       "and combine them with `jdl ensemble RUN_DIR ...`")
  return members


# --------------------------------------------------------------------------- #
# Figures of an ensemble's predictions.
# --------------------------------------------------------------------------- #


def figures(logits_KxNxC: np.ndarray, labels_N: np.ndarray, prefix: str = "") -> dict[str, Any]:
  """What an ensemble's members predict on N examples, against the labels.

  Returns ``{prefix}accuracy`` (the mean of the members' probabilities),
  ``{prefix}vote_accuracy`` (the majority vote of their predicted classes; a
  tie goes to the tied class with the highest mean probability),
  ``{prefix}member_accuracy`` (a list, member by member), ``{prefix}best_member_accuracy``,
  ``{prefix}mean_member_accuracy``, and ``{prefix}disagreement``: the fraction
  of examples on which two members predict different classes, averaged over
  the pairs of members (Fort, Hu and Lakshminarayanan 2019).
  """
  logits = np.asarray(logits_KxNxC, np.float64)
  labels = np.asarray(labels_N).astype(np.int64)
  k, _, c = logits.shape
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  mean = probs.mean(0)
  predicted_KxN = logits.argmax(-1)
  votes_NxC = np.stack([(predicted_KxN == j).sum(0) for j in range(c)], axis=-1)
  # Ties: the most votes first, then the larger mean probability (0.5 * a probability is below one vote).
  vote = np.argmax(votes_NxC + 0.5 * mean, axis=-1)
  member = (predicted_KxN == labels).mean(1)
  pairs = list(itertools.combinations(range(k), 2))
  disagreement = float(np.mean([(predicted_KxN[i] != predicted_KxN[j]).mean() for i, j in pairs])) if pairs else 0.0
  return {f"{prefix}accuracy": float((mean.argmax(-1) == labels).mean()),
          f"{prefix}vote_accuracy": float((vote == labels).mean()),
          f"{prefix}member_accuracy": [float(a) for a in member],
          f"{prefix}best_member_accuracy": float(member.max()),
          f"{prefix}mean_member_accuracy": float(member.mean()),
          f"{prefix}disagreement": disagreement}


def accuracy_by_size(logits_KxNxC: np.ndarray, labels_N: np.ndarray) -> list[float]:
  """The accuracy of the ensemble of the first k members, for k = 1 … K (mean of probabilities)."""
  logits = np.asarray(logits_KxNxC, np.float64)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  cumulative = np.cumsum(probs, axis=0)
  return [float((cumulative[i].argmax(-1) == np.asarray(labels_N)).mean()) for i in range(len(probs))]


def member_forward(apply_fn: Callable[..., Any]) -> Callable[..., Any]:
  """``(variables, x) -> [K, B, C]``, every member's logits, compiled (keep it to call it again)."""
  return jax.jit(lambda v, xb: apply_fn(v, xb, train=False, per_member=True))


def member_logits(apply_fn: Callable[..., Any], variables: Any, x: np.ndarray, batch_size: int,
                  forward: Callable[..., Any] | None = None) -> np.ndarray:
  """Every member's logits ``[K, N, C]`` on inputs ``x`` (already scaled), batch by batch, one compiled program
  (``forward``, from ``member_forward``, to reuse one across calls)."""
  forward = forward or member_forward(apply_fn)
  n = len(x)
  pad = (-n) % batch_size
  xp = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]) if pad else x
  parts = [np.asarray(forward(variables, xp[i:i + batch_size])) for i in range(0, len(xp), batch_size)]
  return np.concatenate(parts, axis=1)[:, :n]


class EnsembleFigures(callbacks_lib.Callback):
  """A ``jdl.train`` callback: every epoch, the members' figures on the eval split, logged as
  ``eval_vote_accuracy``, ``eval_disagreement``, ``eval_best_member_accuracy``,
  ``eval_mean_member_accuracy`` and ``eval_member_{k}_accuracy``."""

  name = "ensemble_figures"

  def __init__(self, apply_fn: Callable[..., Any], x: np.ndarray | None, labels: np.ndarray | None, batch_size: int,
               scale: Callable[[Mapping[str, np.ndarray]], np.ndarray] | None = None):
    self.apply_fn, self.x, self.labels, self.batch_size, self.scale = apply_fn, x, labels, batch_size, scale
    self.forward = member_forward(apply_fn)  # compiled once for every epoch and the test split

  def _figures(self, state: Any, x: np.ndarray, labels: np.ndarray, prefix: str) -> dict[str, Any]:
    variables = {"params": state.params, **state.model_state}
    return figures(member_logits(self.apply_fn, variables, x, self.batch_size, self.forward), labels,
                   prefix=prefix)

  def epoch_metrics(self, run: Any, epoch: int) -> dict[str, float]:
    del epoch
    if self.x is None:
      return {}
    out = self._figures(run.state, self.x, self.labels, "eval_")
    out.pop("eval_accuracy")  # the ensemble's accuracy is the eval step's eval_accuracy
    for k, value in enumerate(out.pop("eval_member_accuracy")):
      out[f"eval_member_{k}_accuracy"] = value
    return out

  def test(self, state: Any, arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The figures on the test split, for ``summary.json`` (``test_accuracy`` is the eval step's)."""
    out = self._figures(state, self.scale(arrays), np.asarray(arrays["label"]), "test_")
    out.pop("test_accuracy")
    return out


def combine_runs(run_dirs: Sequence[Any], split: str = "test", batch_size: int | None = None) -> dict[str, Any]:
  """The ensemble of separately trained runs (``jdl train`` run directories on the same data): the figures
  of :func:`figures` on ``split``, with ``accuracy_by_size`` and each run's directory."""
  from jdl.train import runs as runs_lib  # pylint: disable=g-import-not-at-top

  if len(run_dirs) < 2:
    raise ValueError(f"jdl ensemble: expected two or more run directories, got {len(run_dirs)}")
  loaded = [runs_lib.load_run(d) for d in run_dirs]
  names = {r.config.data.name for r in loaded}
  if len(names) > 1:
    raise ValueError(f"jdl ensemble: the runs are of different datasets ({', '.join(sorted(names))})")
  logits, labels = [], None
  for run in loaded:
    arrays = run.split(split)
    out = np.asarray(run.predict(arrays[run.info.input_key], batch_size=batch_size or 1000)["outputs"])
    if out.ndim != 2 or out.shape[-1] < 2:
      raise ValueError(f"jdl ensemble: {run.directory} predicts {out.shape[1:]} per example; expected class logits")
    logits.append(out)
    labels = np.asarray(arrays["label"])
  stacked = np.stack(logits)
  result = figures(stacked, labels, prefix=f"{split}_")
  result["accuracy_by_size"] = accuracy_by_size(stacked, labels)
  result["runs"] = [str(r.directory) for r in loaded]
  return result

"""The programs every training run is made of, shared by ``fit`` and the optimizer benchmark.

A run is a pure step scanned over batches, an evaluation pass, and the host
code that reads their results. There is one of each in jdl:

* ``chunk_program(step_fn, length)``: ``length`` train steps as one
  ``lax.scan``, each gathering its batch by index from device-resident data.
  ``fit`` compiles it once per run through a strategy; ``jdl.bench`` ``vmap``s
  it over the runs of a tuning sweep and compiles that once.
* ``eval_program(eval_fn)``: the eval step mapped over padded, masked
  batches, their sums added and metric states merged.
* ``train_means`` and ``eval_means``: what the host makes of their outputs
  (the epoch's mean training metrics; means and streamed metrics of an
  evaluation).
* ``first_nonfinite``: the divergence check both use (the first step whose
  training loss is NaN or infinite).

The order of the batches is ``jdl.data.pipeline.batch_indices``: a function
of the seed and the step only, so a resumed run, a run chunked differently and
the same run inside a benchmark sweep all visit the same batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jdl import metrics as metrics_lib

StepFn = Callable[..., Any]
IndexFn = Callable[[jax.Array], jax.Array]


def chunk_program(step_fn: StepFn, length: int, indices: IndexFn | None = None):
  """``(state, data, idx_SxB, start) -> (state, metrics[length])``: steps ``start .. start+length-1``.

  Step ``start + i`` trains on the examples ``data[idx_SxB[start + i]]``.

  Args:
    step_fn: ``(state, batch) -> (state, metrics)``.
    length: the number of steps (the scan's length).
    indices: ``idx_B -> the indices this program instance trains on`` (a
      device's slice under ``pmap``, a sharding constraint under
      ``data_parallel``); the whole batch by default.
  """
  if indices is None:
    indices = lambda idx_B: idx_B  # noqa: E731

  def run_chunk(state, data, idx_SxB, start):
    def body(state, i):
      idx_B = indices(jax.lax.dynamic_index_in_dim(idx_SxB, start + i, keepdims=False))
      batch = {k: jnp.take(v, idx_B, axis=0) for k, v in data.items()}
      return step_fn(state, batch)

    return jax.lax.scan(body, state, jnp.arange(length, dtype=jnp.int32))

  return run_chunk


def eval_program(eval_fn: StepFn):
  """``(state, blocks) -> sums``: the eval step mapped over ``(num_batches, B, ...)`` blocks.

  Per-batch sums are added; ``jdl.metrics`` states among them are merged
  (``merge_stacked``: curve buffers concatenate, R² merges its moments).
  """

  def run_eval(state, blocks):
    sums = jax.lax.map(lambda batch: eval_fn(state, batch), blocks)
    return jax.tree.map(lambda s: s.merge_stacked() if isinstance(s, metrics_lib.Metric) else jnp.sum(s, axis=0),
                        sums, is_leaf=lambda s: isinstance(s, metrics_lib.Metric))

  return run_eval


def train_means(chunks: Sequence[Mapping[str, np.ndarray]]) -> dict[str, float]:
  """The mean of each training metric over every step of ``chunks`` (host arrays of per-step values).

  Steps an optimizer skipped (``jdl.optim.skip_nonfinite``: a ``skipped``
  metric of 1) are left out of the means and counted as ``skipped_steps``.
  """
  steps = {k: np.concatenate([np.ravel(m[k]) for m in chunks]).astype(np.float64) for k in chunks[0].keys()}
  skipped = steps.pop("skipped", None)
  kept = slice(None) if skipped is None else skipped == 0
  out = {k: float(np.mean(v[kept])) if np.any(kept) else math.nan for k, v in steps.items()}
  if skipped is not None:
    out["skipped_steps"] = int(np.sum(skipped))
  return out


def kept_losses(chunks: Sequence[Mapping[str, np.ndarray]]) -> np.ndarray:
  """Every step's training loss, NaN-free where a skipped step's was not (for ``first_nonfinite``)."""
  loss = np.concatenate([np.ravel(m["loss"]) for m in chunks]).astype(np.float64)
  if "skipped" in chunks[0]:
    skipped = np.concatenate([np.ravel(m["skipped"]) for m in chunks])
    loss = np.where(skipped > 0, 0.0, loss)
  return loss


def eval_means(sums: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
  """Means of an evaluation's sums (host values), plus its streamed metrics computed whole.

  Metric states (``make_eval_step(metrics=...)``) are computed from the merged
  state of the whole dataset and flattened by ``jdl.metrics.compute_all``
  (they replace a per-example metric of the same name).
  """
  sums = dict(sums)
  states = sums.pop("metrics", {})
  count = np.maximum(np.asarray(sums.pop("count"), np.float64), 1.0)
  # Scalars for one run; arrays, element by element, for the stacked sums of several (jdl.bench).
  out = {f"{prefix}{k}": _number(np.asarray(v, np.float64) / count) for k, v in sums.items()}
  out.update({f"{prefix}{k}": v for k, v in metrics_lib.compute_all(states).items()})
  return out


def _number(value: np.ndarray) -> float | np.ndarray:
  return float(value) if np.ndim(value) == 0 else value


def first_nonfinite(loss_S: np.ndarray) -> int | None:
  """The index of the first non-finite value of a run's per-step training losses, or None."""
  bad = np.flatnonzero(~np.isfinite(np.asarray(loss_S, np.float64)))
  return int(bad[0]) if bad.size else None

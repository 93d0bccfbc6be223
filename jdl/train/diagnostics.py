"""Training diagnostics: gradient norms, update ratios and activation statistics by layer, every epoch.

Why a deep sigmoid network stops learning and why ReLU units die are seen in
these numbers (docs/visualize.md). With ``config.diagnostics.enabled`` a
``Diagnostics`` callback measures, at the end of every ``every``-th epoch, on
a fixed probe batch (the first ``examples`` of the training split), in
training mode (dropout from a fixed key, BatchNorm on the probe's statistics):

- ``diag_grad_norm/<layer>``: the L2 norm of the loss gradient for each
  weight matrix (every ``kernel``, in the order the layers were created);
- ``diag_update_ratio/<layer>``: the norm of the optimizer's update for that
  gradient over the norm of the weights (about 1e-3 is the classic healthy
  figure for SGD-like steps);
- ``diag_act_mean/<name>``, ``diag_act_std/<name>`` and ``diag_dead/<name>``
  for every activation the model records (``jdl.nn.record_activation``: jdl's
  MLP and small CNN record each hidden layer's output after its nonlinearity):
  the mean, the standard deviation, and the fraction of units (last axis) that
  are ``<= 0`` for every probe example and position — ReLU units that pass no
  gradient on the probe.

The figures join the epoch's logs (``metrics.jsonl``) and are drawn by
``jdl visualize RUN_DIR [RUN_DIR ...] --what diagnostics``. The probe program
is compiled once, at the first measured epoch.
"""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jdl.train.callbacks import Callback, Run

PREFIX = "diag_"
ACTIVATIONS = "activations"


def _natural(text: str) -> list[Any]:
  """A sort key that puts ``Dense_2`` before ``Dense_10``."""
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def kernels(params: Mapping[str, Any], order: Sequence[str] = (), prefix: str = "") -> list[tuple[str, Any]]:
  """``(layer path, kernel)`` for every ``kernel`` in ``params``, in ``order`` (``layer_order``'s; other
  layers after, in natural order). A jitted program returns its dicts sorted by key (``Dense_10`` before
  ``Dense_2``), so the order comes from the model, not the dict."""
  out = []
  for name, value in params.items():
    path = f"{prefix}/{name}" if prefix else str(name)
    if hasattr(value, "items"):
      out.extend(kernels(value, (), path))
    elif name == "kernel":
      out.append((prefix or "kernel", value))
  if prefix:
    return out
  rank = {name: i for i, name in enumerate(order)}
  return sorted(out, key=lambda item: (rank.get(item[0], len(rank)), _natural(item[0])))


def layer_order(apply_fn: Callable[..., Any], variables: Mapping[str, Any], x: Any) -> list[str]:
  """The paths of the model's submodules in the order they are called (traced with ``jax.eval_shape``)."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  order: list[str] = []

  def record(next_fun, args, kwargs, context):
    if context.method_name == "__call__":
      path = "/".join(context.module.path)
      if path and path not in order:
        order.append(path)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(lambda v, x: apply_fn(v, x, train=False), dict(variables), x)
  return order


def _activation_leaves(tree: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
  out = []
  for name, value in tree.items():
    path = f"{prefix}/{name}" if prefix else str(name)
    if hasattr(value, "items"):
      out.extend(_activation_leaves(value, path))
    else:
      for i, leaf in enumerate(value if isinstance(value, tuple) else (value,)):
        out.append((path if i == 0 else f"{path}.{i}", leaf))
  return out


def measure(apply_fn: Callable[..., Any], loss_fn: Callable[[Any, Any], jax.Array], tx: Any, params: Any,
            model_state: Mapping[str, Any], opt_state: Any, batch: Mapping[str, Any], input_key: str,
            rng: jax.Array, order: Sequence[str] = ()) -> dict[str, jax.Array]:
  """The diagnostics of one probe batch (pure; ``Diagnostics`` jits it). Keys as in the module's docstring,
  the layers in ``order`` (``layer_order``'s)."""
  model_state = dict(model_state or {})

  def objective(p):
    variables = {"params": p, **model_state}
    out, state = apply_fn(variables, batch[input_key], train=True, rngs={"dropout": rng},
                          mutable=[*model_state, ACTIVATIONS])
    return jnp.mean(loss_fn(out, batch)), state.get(ACTIVATIONS, {})

  (_, acts), grads = jax.value_and_grad(objective, has_aux=True)(params)
  updates, _ = tx.update(grads, opt_state, params)
  stats: dict[str, jax.Array] = {}
  grad_kernels = dict(kernels(grads))
  update_kernels = dict(kernels(updates))
  for layer, w in kernels(params, order):
    stats[f"{PREFIX}grad_norm/{layer}"] = jnp.linalg.norm(grad_kernels[layer].ravel())
  for layer, w in kernels(params, order):
    w_norm = jnp.linalg.norm(w.ravel())
    stats[f"{PREFIX}update_ratio/{layer}"] = jnp.linalg.norm(update_kernels[layer].ravel()) / jnp.maximum(
        w_norm, 1e-12)
  leaves = sorted(_activation_leaves(acts), key=lambda item: _natural(item[0]))
  for kind in ("act_mean", "act_std", "dead"):
    for name, a in leaves:
      a = a.astype(jnp.float32)
      if kind == "act_mean":
        stats[f"{PREFIX}{kind}/{name}"] = jnp.mean(a)
      elif kind == "act_std":
        stats[f"{PREFIX}{kind}/{name}"] = jnp.std(a)
      else:
        stats[f"{PREFIX}{kind}/{name}"] = jnp.mean(jnp.all(a.reshape(-1, a.shape[-1]) <= 0, axis=0))
  return stats


class Diagnostics(Callback):
  """Logs ``measure``'s figures on a fixed probe batch every ``every`` epochs (see the module's docstring).

  Args:
    apply_fn, loss_fn, tx: the model's ``apply``, the per-example loss
      ``(outputs, batch) -> [B]`` and the optimizer, as the train step has them.
    batch: the probe: a dict with the model's input (as the network takes it,
      images scaled to [0, 1]) under ``input_key`` and what the loss reads.
    every: measure at every ``every``-th epoch (and always at the first).
    seed: the dropout key.
  """

  name = "diagnostics"

  def __init__(self, apply_fn: Callable[..., Any], loss_fn: Callable[[Any, Any], jax.Array], tx: Any,
               batch: Mapping[str, Any], *, input_key: str = "image", every: int = 1, seed: int = 0):
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
      raise ValueError(f"every: expected an int >= 1, got {every!r}")
    if input_key not in batch:
      raise KeyError(f"input_key: the probe batch has no {input_key!r} (its keys: {sorted(batch)})")
    self.batch = {k: jnp.asarray(v) for k, v in batch.items()}
    self.every, self.input_key = every, input_key
    self.rng = jax.random.key(seed)
    self.apply_fn, self.loss_fn, self.tx = apply_fn, loss_fn, tx
    self._measure, self._keys = None, None

  def epoch_metrics(self, run: Run, epoch: int) -> dict[str, float]:
    if epoch % self.every and epoch != 1:
      return {}
    state = run.state
    model_state = dict(state.model_state or {})
    if self._measure is None:  # at the first measured epoch: the layers' order, the program
      order = layer_order(self.apply_fn, {"params": state.params, **model_state}, self.batch[self.input_key])
      keys: list[str] = []

      def fn(params, model_state, opt_state, batch, rng):
        stats = measure(self.apply_fn, self.loss_fn, self.tx, params, model_state, opt_state, batch,
                        self.input_key, rng, order)
        keys[:] = list(stats)  # at trace time: the order measure builds (the program's dict comes back sorted)
        return stats

      self._measure, self._keys = jax.jit(fn), keys
    stats = jax.device_get(self._measure(state.params, model_state, state.opt_state, self.batch, self.rng))
    return {k: float(stats[k]) for k in self._keys}



# --- reading and drawing ----------------------------------------------------------------------------------------


def read_diagnostics(directory: str | pathlib.Path) -> list[dict[str, Any]]:
  """The epochs of ``metrics.jsonl`` in a run directory that carry diagnostics, each with its ``diag_`` figures.

  Raises:
    FileNotFoundError: no ``metrics.jsonl``.
    ValueError: the run logged no diagnostics.
  """
  path = pathlib.Path(directory) / "metrics.jsonl"
  if not path.is_file():
    raise FileNotFoundError(f"run: {directory} holds no metrics.jsonl; pass the --workdir of a `jdl train` run")
  epochs = []
  for text in path.read_text().splitlines():
    try:
      line = json.loads(text)
    except json.JSONDecodeError:
      continue  # a line a kill cut short
    diag = {k: v for k, v in line.items() if k.startswith(PREFIX)}
    if diag:
      epochs.append({"epoch": line.get("epoch"), **diag})
  if not epochs:
    raise ValueError(f"diagnostics: the run in {directory} logged none; train it with "
                     "--config.diagnostics.enabled=true")
  return epochs


def by_layer(epoch_line: Mapping[str, Any], kind: str) -> tuple[list[str], list[float]]:
  """The ``kind`` figures (``grad_norm``, ``update_ratio``, ``act_mean``, ``act_std``, ``dead``) of one epoch, in layer order."""
  head = f"{PREFIX}{kind}/"
  names = [k[len(head):] for k in epoch_line if k.startswith(head)]
  return names, [float(epoch_line[head + n]) for n in names]


def plot_runs(runs: Mapping[str, Sequence[Mapping[str, Any]]], path: str | pathlib.Path, title: str = ""):
  """One figure comparing runs: gradient norm, update ratio and dead fraction by layer (at the first
  measured epoch, solid, and the last, dashed), and the first/last-layer gradient ratio over the epochs."""
  from jdl.train import plots  # pylint: disable=g-import-not-at-top

  plt = plots.plt
  fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
  colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for i, (label, epochs) in enumerate(runs.items()):
    colour = colours[i % len(colours)]
    picks = [(epochs[0], "-o", f"{label}, epoch {epochs[0]['epoch']}")]
    if len(epochs) > 1:
      picks.append((epochs[-1], "--s", f"{label}, epoch {epochs[-1]['epoch']}"))
    for line, style, text in picks:
      for ax, kind in zip(axes[:3], ("grad_norm", "update_ratio", "dead")):
        names, values = by_layer(line, kind)
        if values:
          ax.plot(range(1, len(values) + 1), values, style, color=colour, label=text, markersize=3)
    ratio = []
    for line in epochs:
      _, g = by_layer(line, "grad_norm")
      ratio.append(g[0] / max(g[-1], 1e-30) if g else np.nan)
    axes[3].plot([e["epoch"] for e in epochs], ratio, "-o", color=colour, label=label, markersize=3)
  for ax, (ylabel, log) in zip(axes, (("gradient norm (weights)", True), ("update / weight norm", True),
                                      ("dead units (<= 0 on the whole probe)", False),
                                      ("first / last layer gradient norm", True))):
    ax.set_ylabel(ylabel)
    ax.set_xlabel("epoch" if ax is axes[3] else "layer (input to output)")
    if log:
      ax.set_yscale("log")
    ax.grid(alpha=0.3)
  axes[2].set_ylim(-0.02, 1.02)
  axes[0].legend(fontsize=7)
  axes[3].legend(fontsize=7)
  return plots._save(fig, path, title)  # pylint: disable=protected-access

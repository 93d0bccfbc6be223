"""Adversarial examples: FGSM and PGD, pure, batched and jit-compatible, and robust accuracy.

An adversarial example is an input changed slightly, by gradient steps on the
input itself, until the network gets it wrong (Goodfellow et al. 2015, FGSM;
Madry et al. 2018, PGD). ``logits_fn(x) -> logits`` is any pure function of
the inputs (``jdl.train.load_run(...).logits_fn()``, or a ``model.apply`` with
its variables closed over)::

    x_adv = jdl.attacks.fgsm(logits_fn, x, y, eps=0.1)
    x_adv = jdl.attacks.pgd(logits_fn, x, y, eps=0.1, step_size=0.025, steps=10, key=jax.random.key(0))
    table = jdl.attacks.robust_accuracy(logits_fn, x, y, eps=(0.05, 0.1), method="pgd")

The loss whose gradient they follow is cross-entropy with integer labels
(binary cross-entropy for one logit). Untargeted attacks increase it for the
true label ``y``; targeted ones (``targeted=True``, ``y`` the target class)
decrease it for the target. Every adversarial example stays within its
ε-ball around ``x`` (L∞ or L2) and within ``clip`` (the valid input range,
``(0, 1)`` for jdl's scaled images; ``None`` for no range).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

NORMS = ("linf", "l2")
METHODS = ("fgsm", "pgd")


def _concrete(value: Any) -> bool:
  return not isinstance(value, jax.core.Tracer)


def check_eps(eps: Any, name: str = "eps") -> None:
  """Raises ``ValueError`` unless a concrete ``eps`` (or ``name``) is a finite number >= 0 (traced values pass)."""
  if _concrete(eps) and np.ndim(eps) == 0 and not (math.isfinite(float(eps)) and float(eps) >= 0):
    raise ValueError(f"{name}: expected a finite number >= 0, got {eps!r}")


def _check_clip(clip: Any) -> None:
  if clip is None:
    return
  if not (isinstance(clip, (tuple, list)) and len(clip) == 2 and float(clip[0]) < float(clip[1])):
    raise ValueError(f"clip: expected None or a (low, high) pair with low < high, got {clip!r}")


def attack_loss(logits: jax.Array, y: jax.Array) -> jax.Array:
  """Per-example loss the attacks follow: cross-entropy (integer labels), or binary for one logit."""
  if logits.shape[-1] == 1:
    return optax.sigmoid_binary_cross_entropy(logits[..., 0], y.astype(logits.dtype))
  return optax.softmax_cross_entropy_with_integer_labels(logits, y)


def _input_gradient(logits_fn: Callable[[jax.Array], jax.Array], x: jax.Array, y: jax.Array) -> jax.Array:
  # The sum of per-example losses: each example's gradient is its own loss's (no 1/batch factor).
  return jax.grad(lambda v: jnp.sum(attack_loss(logits_fn(v), y)))(x)


def _clip(x: jax.Array, clip: Any) -> jax.Array:
  return x if clip is None else jnp.clip(x, clip[0], clip[1])


def fgsm(logits_fn: Callable[[jax.Array], jax.Array], x: jax.Array, y: jax.Array, *, eps: float | jax.Array,
         targeted: bool = False, clip: tuple[float, float] | None = (0.0, 1.0)) -> jax.Array:
  """The fast gradient sign method: ``clip(x ± eps · sign(∇ₓ loss(x, y)))`` (− when ``targeted``)."""
  check_eps(eps)
  _check_clip(clip)
  g = _input_gradient(logits_fn, x, y)
  direction = -1.0 if targeted else 1.0
  return _clip(x + direction * eps * jnp.sign(g), clip)


def _per_example_norm(v: jax.Array) -> jax.Array:
  axes = tuple(range(1, v.ndim))
  return jnp.sqrt(jnp.sum(jnp.square(v), axis=axes, keepdims=True))


def _project(delta: jax.Array, eps: Any, norm: str) -> jax.Array:
  if norm == "linf":
    return jnp.clip(delta, -eps, eps)
  scale = jnp.minimum(1.0, eps / jnp.maximum(_per_example_norm(delta), 1e-12))
  return delta * scale


def pgd(logits_fn: Callable[[jax.Array], jax.Array], x: jax.Array, y: jax.Array, *, eps: float | jax.Array,
        step_size: float | jax.Array, steps: int, norm: str = "linf", random_start: bool = True,
        key: jax.Array | None = None, targeted: bool = False,
        clip: tuple[float, float] | None = (0.0, 1.0)) -> jax.Array:
  """Projected gradient descent: ``steps`` steps of ``step_size`` on the input, each projected back.

  L∞: a signed-gradient step, then the clip to ``[x - eps, x + eps]``; L2: a
  step along the gradient scaled to norm ``step_size`` per example, then the
  projection onto the L2 ball of radius ``eps``. ``random_start`` starts from a
  uniform point of the ε-ball (needs ``key``). The loop is one
  ``lax.fori_loop``: the whole attack compiles to one program.
  """
  check_eps(eps)
  check_eps(step_size, "step_size")
  _check_clip(clip)
  if norm not in NORMS:
    raise ValueError(f"norm: expected one of {', '.join(NORMS)}, got {norm!r}")
  if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
    raise ValueError(f"steps: expected an int >= 1, got {steps!r}")
  if random_start and key is None:
    raise ValueError("key: random_start=True needs a jax.random key (or pass random_start=False)")
  x = jnp.asarray(x)
  direction = -1.0 if targeted else 1.0
  if random_start:
    if norm == "linf":
      delta = jax.random.uniform(key, x.shape, x.dtype, -1.0, 1.0) * eps
    else:  # a uniform point of the L2 ball: a random direction, a radius eps·u^(1/d)
      k1, k2 = jax.random.split(key)
      d = jax.random.normal(k1, x.shape, x.dtype)
      dims = int(np.prod(x.shape[1:]))
      radius = eps * jax.random.uniform(k2, (x.shape[0],) + (1,) * (x.ndim - 1), x.dtype) ** (1.0 / dims)
      delta = d / jnp.maximum(_per_example_norm(d), 1e-12) * radius
    x_adv = _clip(x + delta, clip)
  else:
    x_adv = x

  def body(_, x_adv):
    g = _input_gradient(logits_fn, x_adv, y)
    if norm == "linf":
      step = jnp.sign(g)
    else:
      step = g / jnp.maximum(_per_example_norm(g), 1e-12)
    x_next = x_adv + direction * step_size * step
    return _clip(x + _project(x_next - x, eps, norm), clip)

  return jax.lax.fori_loop(0, int(steps), body, x_adv)


def predictions(logits: jax.Array) -> jax.Array:
  """Class predictions: argmax, or ``logit > 0`` for one logit."""
  if logits.shape[-1] == 1:
    return (logits[..., 0] > 0).astype(jnp.int32)
  return jnp.argmax(logits, axis=-1)


def check_method(method: str) -> None:
  if method not in METHODS:
    raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")


@functools.partial(jax.jit, static_argnums=(0, 4, 5, 6, 7))
def _attack_batch(logits_fn, x, y, eps, method, steps, norm, clip, step_size, key):
  if method == "fgsm":
    x_adv = fgsm(logits_fn, x, y, eps=eps, clip=clip)
  else:
    x_adv = pgd(logits_fn, x, y, eps=eps, step_size=step_size, steps=steps, norm=norm, key=key, clip=clip)
  clean, adv = predictions(logits_fn(x)), predictions(logits_fn(x_adv))
  return x_adv, clean, adv


def robust_accuracy(logits_fn: Callable[[jax.Array], jax.Array], x: Any, y: Any, *, eps: Sequence[float],
                    method: str = "pgd", steps: int = 10, step_size: float | None = None, norm: str = "linf",
                    clip: tuple[float, float] | None = (0.0, 1.0), batch_size: int = 500,
                    seed: int = 0) -> dict[str, Any]:
  """Clean and adversarial accuracy of ``logits_fn`` on ``(x, y)`` for each ε.

  The attack is compiled once for all ε (ε is an argument of the program; once
  more for a smaller last batch) and runs in batches of ``batch_size``. PGD's
  step size defaults (None or 0) to ``2.5 · ε / steps`` (the rule of thumb of
  the madrylab ``robustness`` library) and PGD starts at a random point.
  ``logits_fn`` must be hashable and the same object across calls for the
  compiled program to be reused (``TrainedRun.logits_fn()`` returns a new one).

  Returns:
    ``{"clean_accuracy": float, "eps": [...], "accuracy": [...], "examples": n,
    "method", "norm", "steps", "step_size": [...]}``, and ``"first"``: the
    first batch's adversarial inputs and predictions for ε[-1] (for figures).
  """
  check_method(method)
  if norm not in NORMS:
    raise ValueError(f"norm: expected one of {', '.join(NORMS)}, got {norm!r}")
  eps = [float(e) for e in eps]
  if not eps:
    raise ValueError("eps: expected at least one value, got none")
  for e in eps:
    check_eps(e)
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
  if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
    raise ValueError(f"steps: expected an int >= 1, got {steps!r}")
  _check_clip(clip)
  x, y = np.asarray(x), np.asarray(y)
  n = len(x)
  if n == 0 or len(y) != n:
    raise ValueError(f"x, y: expected the same number (>= 1) of inputs and labels, got {len(x)} and {len(y)}")
  clip_t = None if clip is None else (float(clip[0]), float(clip[1]))
  key = jax.random.key(seed)
  correct_clean, correct = 0, [0] * len(eps)
  if step_size:
    check_eps(step_size, "step_size")
  sizes = [step_size if step_size else 2.5 * e / steps for e in eps]
  first: dict[str, Any] = {}
  for i, e in enumerate(eps):
    for start in range(0, n, batch_size):
      xb, yb = jnp.asarray(x[start:start + batch_size]), jnp.asarray(y[start:start + batch_size])
      key, sub = jax.random.split(key)
      x_adv, clean, adv = _attack_batch(logits_fn, xb, yb, jnp.float32(e), method, steps, norm, clip_t,
                                        jnp.float32(sizes[i]), sub)
      correct[i] += int(jnp.sum(adv == yb))
      if i == 0:
        correct_clean += int(jnp.sum(clean == yb))
      if start == 0 and i == len(eps) - 1:
        first = {"x": np.asarray(xb), "x_adv": np.asarray(x_adv), "y": np.asarray(yb),
                 "clean_pred": np.asarray(clean), "adv_pred": np.asarray(adv)}
  return {"method": method, "norm": norm, "steps": steps if method == "pgd" else 1, "examples": n,
          "clean_accuracy": correct_clean / n, "eps": eps, "step_size": sizes if method == "pgd" else None,
          "accuracy": [c / n for c in correct], "first": first}


def adversarial_transform(apply_fn: Callable[..., Any], input_key: str = "image", label_key: str = "label", *,
                          method: str = "pgd", eps: float = 0.1, steps: int = 7, step_size: float | None = None,
                          norm: str = "linf", fraction: float = 0.5,
                          clip: tuple[float, float] | None = (0.0, 1.0)) -> Callable[..., Any]:
  """A train-step batch transform (``make_train_step(batch_transforms=...)``) for adversarial training.

  Each training batch's first ``round(fraction · B)`` inputs are replaced by
  adversarial examples against the current parameters (the model in
  evaluation mode: no dropout, BatchNorm's running averages; Madry et al.'s and
  Wong et al.'s code attack the training mode instead), made inside the
  same compiled step; the gradient of the training loss does not flow through
  the attack (``stop_gradient``), as in Madry et al. ``fraction=1`` trains on
  adversarial examples only; ``0.5`` on half of each batch, half clean
  (Kurakin et al. 2017's mixed batches). PGD starts at a random point of the
  ε-ball, from the step's own key; its step size defaults to ``2.5 · ε / steps``.
  """
  check_method(method)
  check_eps(eps)
  if norm not in NORMS:
    raise ValueError(f"norm: expected one of {', '.join(NORMS)}, got {norm!r}")
  if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
    raise ValueError(f"steps: expected an int >= 1, got {steps!r}")
  if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < float(fraction) <= 1.0:
    raise ValueError(f"fraction: expected a number in (0, 1], got {fraction!r}")
  _check_clip(clip)
  size = step_size if step_size else 2.5 * eps / steps
  check_eps(size, "step_size")

  def transform(state, batch, key):
    x, y = batch[input_key], batch[label_key]
    k = max(1, int(round(float(fraction) * x.shape[0])))
    variables = {"params": state.params, **(state.model_state or {})}

    def logits_fn(v):
      return apply_fn(variables, v, train=False)

    if method == "fgsm":
      x_adv = fgsm(logits_fn, x[:k], y[:k], eps=eps, clip=clip)
    else:
      x_adv = pgd(logits_fn, x[:k], y[:k], eps=eps, step_size=size, steps=steps, norm=norm, key=key, clip=clip)
    x_adv = jax.lax.stop_gradient(x_adv.astype(x.dtype))
    return {**batch, input_key: x_adv if k == x.shape[0] else jnp.concatenate([x_adv, x[k:]], axis=0)}

  return transform


"""Data augmentation on the device, inside the compiled train step.

``config.augment`` names the transforms, in order, as a spec string::

    jdl train cnn_fashion_mnist --config.augment=crop:2,flip,rotate:10
    jdl train cnn_fashion_mnist --config.augment=crop:2,cutout:8,mixup:0.2

| term | what it does to each training image |
|---|---|
| ``crop:P`` | pads by ``P`` pixels (zeros) and crops back at a random offset: a shift of up to ``P`` pixels |
| ``flip`` | mirrors left-right with probability 1/2 (``flip:0.3``: another probability); not for digits |
| ``rotate:D`` | rotates by a random angle in [-D, D] degrees about the centre (bilinear, zeros outside) |
| ``cutout:S`` | sets a random S×S square to 0 (random erasing; DeVries & Taylor 2017) |
| ``mixup:A`` | mixes each image with another of the batch, λ ~ Beta(A, A); the loss mixes their labels the same way |
| ``cutmix:A`` | pastes a random box of another image of the batch, of area 1 - λ, λ ~ Beta(A, A); the labels mix by area |

Each is a ``(state, batch, key) -> batch`` transform of ``make_train_step``'s
``batch_transforms``: it runs inside the compiled step (the scanned epoch
keeps its speed), draws from the step's own key (deterministic given the seed
and the step, and a resumed run draws the same), and is never applied at
evaluation. Images are ``[B, H, W, C]`` in [0, 1] (jdl scales uint8 images
first); every transform keeps the shape and the range. Mixup and CutMix add
``label_mix`` (the other example's label) and ``mix_weight`` (λ per example)
to the batch; ``mixed_loss`` then computes ``λ · loss(y) + (1 - λ) · loss(y_mix)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Transform = Callable[[Any, dict[str, jax.Array], jax.Array], dict[str, jax.Array]]
NAMES = ("crop", "flip", "rotate", "cutout", "mixup", "cutmix")
MIX_LABEL, MIX_WEIGHT = "label_mix", "mix_weight"
_EXAMPLES = {"crop": 4, "rotate": 10, "cutout": 8, "mixup": 0.2, "cutmix": 1.0}


def _images(x: jax.Array, name: str) -> None:
  if x.ndim != 4:
    raise ValueError(f"augment: {name} works on images (batch, height, width, channels); the input has shape "
                     f"{tuple(x.shape)}")


def random_crop(x: jax.Array, key: jax.Array, pad: int) -> jax.Array:
  """Each image padded by ``pad`` zeros and cropped back at a random offset (a shift of up to ``pad``)."""
  if pad == 0:
    return x
  b, h, w, _ = x.shape
  padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  offsets = jax.random.randint(key, (b, 2), 0, 2 * pad + 1)
  crop = lambda image, o: jax.lax.dynamic_slice(image, (o[0], o[1], 0), (h, w, image.shape[-1]))  # noqa: E731
  return jax.vmap(crop)(padded, offsets)


def horizontal_flip(x: jax.Array, key: jax.Array, probability: float = 0.5) -> jax.Array:
  """Each image mirrored left-right with ``probability``."""
  flip = jax.random.bernoulli(key, probability, (x.shape[0], 1, 1, 1))
  return jnp.where(flip, x[:, :, ::-1, :], x)


def rotate(x: jax.Array, key: jax.Array, degrees: float) -> jax.Array:
  """Each image rotated by a uniform random angle in [-degrees, degrees] about its centre (bilinear)."""
  if degrees == 0:
    return x
  b, h, w, c = x.shape
  angles = jax.random.uniform(key, (b,), x.dtype, -1.0, 1.0) * (degrees * math.pi / 180.0)
  rows, cols = jnp.meshgrid(jnp.arange(h, dtype=x.dtype), jnp.arange(w, dtype=x.dtype), indexing="ij")
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0

  def one(image, angle):
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    # The source pixel of each output pixel: the inverse rotation about the centre.
    src_r = cos * (rows - cy) + sin * (cols - cx) + cy
    src_c = -sin * (rows - cy) + cos * (cols - cx) + cx
    sample = lambda channel: jax.scipy.ndimage.map_coordinates(channel, [src_r, src_c], order=1, mode="constant",  # noqa: E731
                                                               cval=0.0)
    return jnp.stack([sample(image[..., k]) for k in range(c)], axis=-1)

  return jax.vmap(one)(x, angles)


def _box_masks(key: jax.Array, b: int, h: int, w: int, box_h: jax.Array, box_w: jax.Array) -> jax.Array:
  """``[B, H, W, 1]`` booleans: a box of ``box_h × box_w`` (per example) at a random centre, clipped to the image."""
  k1, k2 = jax.random.split(key)
  cy = jax.random.randint(k1, (b,), 0, h)
  cx = jax.random.randint(k2, (b,), 0, w)
  rows = jnp.arange(h)[None, :, None]
  cols = jnp.arange(w)[None, None, :]
  top, left = cy - box_h // 2, cx - box_w // 2
  inside = ((rows >= top[:, None, None]) & (rows < (top + box_h)[:, None, None])
            & (cols >= left[:, None, None]) & (cols < (left + box_w)[:, None, None]))
  return inside[..., None]


def cutout(x: jax.Array, key: jax.Array, size: int) -> jax.Array:
  """Each image with a random ``size × size`` square (clipped at the borders) set to 0."""
  if size == 0:
    return x
  b, h, w, _ = x.shape
  side = jnp.full((b,), size)
  return jnp.where(_box_masks(key, b, h, w, side, side), jnp.zeros_like(x), x)


def _partners(key: jax.Array, b: int) -> jax.Array:
  return jax.random.permutation(key, b)


def mixup(batch: dict[str, jax.Array], key: jax.Array, alpha: float, input_key: str,
          label_key: str = "label") -> dict[str, jax.Array]:
  """Mixup (Zhang et al. 2018): ``λ x + (1 - λ) x[π]`` with λ ~ Beta(alpha, alpha) per example, π a permutation."""
  x = batch[input_key]
  k1, k2 = jax.random.split(key)
  lam = jax.random.beta(k1, alpha, alpha, (x.shape[0],)).astype(x.dtype) if alpha > 0 else jnp.ones(
      (x.shape[0],), x.dtype)
  partner = _partners(k2, x.shape[0])
  shape = (-1,) + (1,) * (x.ndim - 1)
  mixed = lam.reshape(shape) * x + (1 - lam.reshape(shape)) * x[partner]
  return {**batch, input_key: mixed, MIX_LABEL: batch[label_key][partner], MIX_WEIGHT: lam}


def cutmix(batch: dict[str, jax.Array], key: jax.Array, alpha: float, input_key: str,
           label_key: str = "label") -> dict[str, jax.Array]:
  """CutMix (Yun et al. 2019): a box of another image of the batch pasted in; the label weight is the area kept."""
  x = batch[input_key]
  _images(x, "cutmix")
  b, h, w, _ = x.shape
  k1, k2, k3 = jax.random.split(key, 3)
  lam = jax.random.beta(k1, alpha, alpha, (b,)) if alpha > 0 else jnp.ones((b,))
  ratio = jnp.sqrt(1.0 - lam)
  box_h, box_w = jnp.round(ratio * h).astype(jnp.int32), jnp.round(ratio * w).astype(jnp.int32)
  inside = _box_masks(k2, b, h, w, box_h, box_w)
  partner = _partners(k3, b)
  mixed = jnp.where(inside, x[partner], x)
  kept = 1.0 - jnp.mean(inside.astype(x.dtype), axis=(1, 2, 3))  # the exact area left, after clipping
  return {**batch, input_key: mixed, MIX_LABEL: batch[label_key][partner], MIX_WEIGHT: kept.astype(x.dtype)}


def parse(spec: str) -> list[tuple[str, float | None]]:
  """``"crop:4,flip,rotate:10"`` → ``[("crop", 4.0), ("flip", None), ("rotate", 10.0)]``.

  Raises:
    ValueError: an unknown name (the known ones listed), a missing or bad strength.
  """
  if not isinstance(spec, str):
    raise ValueError(f"augment: expected a string such as 'crop:4,flip', got {spec!r}")
  terms = []
  for part in (p.strip() for p in spec.split(",")):
    if not part:
      continue
    name, _, value = part.partition(":")
    name = name.strip()
    if name not in NAMES:
      raise ValueError(f"augment: unknown augmentation {name!r} in {spec!r}; known: {', '.join(NAMES)} "
                       "(e.g. crop:4,flip,rotate:10,cutout:8,mixup:0.2,cutmix:1.0)")
    if not value.strip():
      if name != "flip":
        raise ValueError(f"augment: {name!r} needs a strength, e.g. {name}:{_EXAMPLES[name]}")
      terms.append((name, None))
      continue
    try:
      number = float(value)
    except ValueError:
      raise ValueError(f"augment: the strength in {part!r} is not a number") from None
    if not (math.isfinite(number) and number >= 0) or (name == "flip" and number > 1):
      raise ValueError(f"augment: {part!r}: expected a finite number >= 0{' and <= 1' if name == 'flip' else ''}")
    if name in ("crop", "cutout") and number != int(number):
      raise ValueError(f"augment: {part!r}: {name} takes a whole number of pixels")
    terms.append((name, number))
  mixes = [n for n, _ in terms if n in ("mixup", "cutmix")]
  if len(mixes) > 1:
    raise ValueError(f"augment: {spec!r} names {' and '.join(mixes)}; a batch is mixed once: choose one")
  return terms


def transforms(spec: str, input_key: str = "image", label_key: str = "label") -> list[Transform]:
  """The train-step batch transforms of ``spec`` (``parse``), in order, each with its own key."""
  out: list[Transform] = []
  for name, value in parse(spec):
    def transform(state, batch, key, name=name, value=value):
      del state
      x = batch[input_key]
      if name in ("mixup", "cutmix"):
        return (mixup if name == "mixup" else cutmix)(dict(batch), key, float(value), input_key, label_key)
      _images(x, name)
      if name == "crop":
        x = random_crop(x, key, int(value))
      elif name == "flip":
        x = horizontal_flip(x, key, 0.5 if value is None else float(value))
      elif name == "rotate":
        x = rotate(x, key, float(value))
      else:
        x = cutout(x, key, int(value))
      return {**batch, input_key: x}

    out.append(transform)
  return out


def mixed_loss(loss_fn: Callable[[Any, Any], jax.Array], label_key: str = "label") -> Callable[[Any, Any], jax.Array]:
  """``loss_fn`` that, on a batch mixup or CutMix made, mixes the two labels' losses by ``mix_weight``."""
  def loss(outputs: Any, batch: Any) -> jax.Array:
    if MIX_WEIGHT not in batch:
      return loss_fn(outputs, batch)
    lam = batch[MIX_WEIGHT]
    other = {**batch, label_key: batch[MIX_LABEL]}
    return lam * loss_fn(outputs, batch) + (1 - lam) * loss_fn(outputs, other)

  return loss

"""Input pipelines: device-resident epochs and a streaming fallback.

Two ways to feed a train step, both driven by the same per-epoch permutation so
they visit examples in the same order:

* **Device-resident** (the default when the data fits): the arrays are put on
  the device once; a compiled ``lax.scan`` gathers each batch by index inside
  the program. The host only dispatches a few calls per epoch.
* **Streaming**: numpy batches gathered on the host and transferred one step
  ahead of the compute (``jax.device_put`` is asynchronous).

Training drops the last partial batch (its examples are seen in other epochs,
since the permutation changes every epoch); evaluation never drops: the last
batch is padded and carries a ``mask`` of real examples.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import numpy as np

Arrays = Mapping[str, np.ndarray]

# Data larger than this stays on the host and streams (bytes). Fashion-MNIST's
# training set is 47 MB as uint8.
DEFAULT_DEVICE_BYTES_LIMIT = 2 * 1024**3


def num_examples(arrays: Arrays) -> int:
  """The common leading dimension of ``arrays``; raises if they disagree."""
  sizes = {k: np.shape(v)[0] for k, v in arrays.items()}
  if not sizes:
    raise ValueError("arrays: expected a non-empty dict of arrays, got an empty one")
  if len(set(sizes.values())) != 1:
    raise ValueError(f"arrays: every array needs the same number of examples, got {sizes}")
  return next(iter(sizes.values()))


def nbytes(arrays: Arrays) -> int:
  return int(sum(np.asarray(v).nbytes for v in arrays.values()))


def fingerprint(arrays: Arrays) -> dict[str, Any]:
  """What identifies a split's contents: ``{"examples": N, "sha256": hex}`` of every array's dtype, shape and
  bytes, keys in sorted order. Two loads of the same data give the same fingerprint; any changed example,
  label, order or dtype gives another."""
  import hashlib  # pylint: disable=g-import-not-at-top

  digest = hashlib.sha256()
  for key in sorted(arrays):
    value = np.ascontiguousarray(arrays[key])
    digest.update(f"{key}:{value.dtype.str}:{value.shape};".encode())
    digest.update(memoryview(value).cast("B"))
  return {"examples": num_examples(arrays), "sha256": digest.hexdigest()}


def fits_on_device(arrays: Arrays, limit_bytes: int = DEFAULT_DEVICE_BYTES_LIMIT) -> bool:
  """Whether ``arrays`` are small enough to keep on the device."""
  return nbytes(arrays) <= limit_bytes


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  """The shuffling order of epoch ``epoch`` (counting from 1): a function of ``(seed, epoch)`` only.

  Drawn on the host by NumPy's PCG64 generator seeded with ``[seed, epoch]``
  (``numpy.random.default_rng``), so it is the same on every machine and in
  every process of a multi-host run, costs no compilation and no device round
  trip, and a resumed run at epoch ``k`` visits the same batches as the
  uninterrupted one. The result is read-only (it is cached).
  """
  return _permutation(int(seed), int(epoch), int(n))


@functools.lru_cache(maxsize=64)
def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  perm = np.random.default_rng([seed, epoch]).permutation(n).astype(np.int32)
  perm.setflags(write=False)
  return perm


def epoch_batches(seed: int, epoch: int, n: int, batch_size: int) -> np.ndarray:
  """Epoch ``epoch``'s batches as example indices, ``(n // batch_size, batch_size)`` int32.

  The epoch's permutation cut into full batches; its last partial batch is
  dropped (those examples come round in other epochs' orders).
  """
  steps = steps_per_epoch(n, batch_size)
  return epoch_permutation(seed, epoch, n)[:steps * batch_size].reshape(steps, batch_size)


def batch_indices(seed: int, start: int, length: int, batch_size: int, n: int) -> np.ndarray:
  """Example indices of training steps ``start .. start+length-1`` (counting from 0): ``(length, batch_size)``.

  Step ``t`` is batch ``t mod S`` of epoch ``t div S + 1`` (``S = n //
  batch_size``), the batches ``epoch_batches`` gives, so any chunking of the
  steps, a resumed run and a run inside a benchmark sweep visit the same
  batches.
  """
  check_batch_size(n, batch_size)
  per_epoch = steps_per_epoch(n, batch_size)
  first, last = start // per_epoch, (start + length - 1) // per_epoch
  order = np.concatenate([epoch_batches(seed, e + 1, n, batch_size) for e in range(first, last + 1)])
  offset = start - first * per_epoch
  return order[offset:offset + length]


def steps_per_epoch(n: int, batch_size: int) -> int:
  """Full training batches in ``n`` examples (the last partial batch is dropped)."""
  return n // batch_size


def check_batch_size(n: int, batch_size: int, what: str = "batch_size") -> None:
  if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f"{what}: expected a positive integer, got {batch_size!r}")
  if batch_size > n:
    raise ValueError(f"{what}: {batch_size} is larger than the {n} training examples; "
                     f"expected at most {n}")


def padded_eval_batches(arrays: Arrays, batch_size: int) -> dict[str, np.ndarray]:
  """Splits ``arrays`` into ``(num_batches, batch_size, ...)`` blocks plus a ``mask``.

  The last batch is padded with copies of example 0 whose mask is 0, so every
  example is counted exactly once and no shape changes between batches.
  """
  n = num_examples(arrays)
  num_batches = -(-n // batch_size)
  pad = num_batches * batch_size - n
  out = {}
  for key, value in arrays.items():
    value = np.asarray(value)
    if pad:
      value = np.concatenate([value, np.repeat(value[:1], pad, axis=0)])
    out[key] = value.reshape((num_batches, batch_size) + value.shape[1:])
  mask = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
  out["mask"] = mask.reshape(num_batches, batch_size)
  return out


def host_batches(arrays: Arrays, idx_SxB: np.ndarray) -> Iterator[dict[str, np.ndarray]]:
  """Yields the training batches ``arrays[idx_SxB[i]]`` gathered on the host, in order."""
  for idx_B in idx_SxB:
    yield {k: np.asarray(v)[idx_B] for k, v in arrays.items()}


def prefetch_to_device(batches: Iterator[Mapping[str, np.ndarray]], size: int = 2, sharding=None) -> Iterator[dict[str, jax.Array]]:
  """Transfers batches ``size`` steps ahead of their use (transfers are async)."""
  queue: list[dict[str, jax.Array]] = []
  for batch in batches:
    queue.append(jax.device_put(dict(batch), sharding))
    if len(queue) > size:
      yield queue.pop(0)
  yield from queue

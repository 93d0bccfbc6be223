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

from collections.abc import Iterator, Mapping

import jax
import jax.numpy as jnp
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


def fits_on_device(arrays: Arrays, limit_bytes: int = DEFAULT_DEVICE_BYTES_LIMIT) -> bool:
  """Whether ``arrays`` are small enough to keep on the device."""
  return nbytes(arrays) <= limit_bytes


def epoch_permutation(seed: int, epoch: int, n: int) -> jax.Array:
  """The shuffling order of epoch ``epoch``: a function of ``(seed, epoch)`` only.

  Resuming a run at epoch ``k`` therefore visits the same batches as the
  uninterrupted run.
  """
  key = jax.random.fold_in(jax.random.PRNGKey(seed), epoch)
  return jax.random.permutation(key, n).astype(jnp.int32)


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


def host_batches(arrays: Arrays, perm: np.ndarray, batch_size: int, num_steps: int) -> Iterator[dict[str, np.ndarray]]:
  """Yields ``num_steps`` training batches gathered on the host in ``perm`` order."""
  for i in range(num_steps):
    idx = perm[i * batch_size:(i + 1) * batch_size]
    yield {k: np.asarray(v)[idx] for k, v in arrays.items()}


def prefetch_to_device(batches: Iterator[Mapping[str, np.ndarray]], size: int = 2, sharding=None) -> Iterator[dict[str, jax.Array]]:
  """Transfers batches ``size`` steps ahead of their use (transfers are async)."""
  queue: list[dict[str, jax.Array]] = []
  for batch in batches:
    queue.append(jax.device_put(dict(batch), sharding))
    if len(queue) > size:
      yield queue.pop(0)
  yield from queue

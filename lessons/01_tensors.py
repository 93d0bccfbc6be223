"""01 · Tensors: rank, shape, dtype, broadcasting, the dot product, reshape, and why layers need a non-linearity.

Syllabus §1. A tensor is an array with a rank (its number of axes), a shape and a dtype; every kind of data
has its rank, and a batch of them one more, the batch axis first. Element-wise operations broadcast, the dot
product contracts an axis, reshape regroups the same numbers. Geometrically a matrix is a linear map: it
rotates and stretches points. And a stack of linear layers without an activation between them is one linear
map: the lesson multiplies it out and shows the difference is rounding.

    python lessons/01_tensors.py [--quick] [--out lessons/out]
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

import jdl


def run(quick: bool = False, out: str = "lessons/out") -> dict:
  # The rank each kind of data needs, with the batch axis first.
  examples = {
      "vector data (features)": jnp.zeros((128, 20)),            # (batch, features)
      "time series": jnp.zeros((128, 40, 1)),                    # (batch, time, channels): MNIST-1D
      "images": jnp.zeros((128, 28, 28, 1), jnp.uint8),          # (batch, height, width, channels): NHWC
      "video": jnp.zeros((4, 16, 64, 64, 3), jnp.uint8),         # (batch, frames, height, width, channels)
  }
  for kind, x in examples.items():
    print(f"{kind:24s} rank {x.ndim}  shape {tuple(x.shape)}  dtype {x.dtype}")

  # Element-wise operations and broadcasting: a (3,) row is added to every row of a (4, 3) matrix.
  a = jnp.arange(12.0).reshape(4, 3)
  b = jnp.array([10.0, 20.0, 30.0])
  broadcast = a + b                                                # b is stretched over the first axis
  assert bool(jnp.all(broadcast == a + jnp.tile(b, (4, 1))))
  # The dot product contracts the last axis of the left with the first of the right: (4, 3) @ (3, 2) -> (4, 2).
  w = jnp.ones((3, 2))
  print("dot:", (a @ w).shape, "  reshape (4, 3) -> (2, 6) -> (12,):", a.reshape(2, 6).shape, a.reshape(-1).shape)

  # A matrix as a geometric map: rotate points by 30 degrees and stretch along x.
  angle = np.pi / 6
  rotate = jnp.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  stretch = jnp.diag(jnp.array([2.0, 1.0]))
  square = jnp.array([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]], jnp.float32)
  mapped = square @ (stretch @ rotate).T

  # Without activations, three Dense layers are one linear map: W3(W2(W1 x + b1) + b2) + b3 = W x + b.
  key = jax.random.key(0)
  width = 16 if quick else 64
  layers = [jdl.nn.Dense(width, kernel_init="glorot_uniform", bias_init="normal") for _ in range(3)]
  x = jax.random.normal(key, (32, width))
  params = [layer.init(jax.random.fold_in(key, i), x)["params"] for i, layer in enumerate(layers)]
  h = x
  for layer, p in zip(layers, params):
    h = layer.apply({"params": p}, h)
  W = params[0]["kernel"] @ params[1]["kernel"] @ params[2]["kernel"]
  b = (params[0]["bias"] @ params[1]["kernel"] + params[1]["bias"]) @ params[2]["kernel"] + params[2]["bias"]
  collapse_error = float(jnp.max(jnp.abs(h - (x @ W + b))))
  # With a ReLU between them, no single matrix does it: the best linear fit leaves a real residual.
  h_relu = x
  for i, (layer, p) in enumerate(zip(layers, params)):
    h_relu = layer.apply({"params": p}, h_relu)
    h_relu = jax.nn.relu(h_relu) if i < 2 else h_relu
  x1 = jnp.concatenate([x, jnp.ones((x.shape[0], 1))], axis=1)
  fit, *_ = jnp.linalg.lstsq(x1, h_relu)
  relu_residual = float(jnp.max(jnp.abs(x1 @ fit - h_relu)))
  print(f"three linear layers vs one matrix: max difference {collapse_error:.2e} (rounding)")
  print(f"with ReLUs, the best single linear map misses by up to {relu_residual:.2f}")

  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  path = pathlib.Path(out) / "01_tensors.png"
  path.parent.mkdir(parents=True, exist_ok=True)
  fig, ax = plt.subplots(figsize=(4, 4))
  ax.plot(square[:, 0], square[:, 1], "o-", label="unit square")
  ax.plot(mapped[:, 0], mapped[:, 1], "s-", label="stretch · rotate 30°")
  ax.set_aspect("equal")
  ax.grid(alpha=0.3)
  ax.legend()
  ax.set_title("A matrix is a linear map")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return {"collapse_error": collapse_error, "relu_residual": relu_residual, "figure": str(path)}


if __name__ == "__main__":
  import argparse

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="a reduced size (what the tests run)")
  parser.add_argument("--out", default="lessons/out", help="where the figures go")
  args = parser.parse_args()
  for name, value in run(quick=args.quick, out=args.out).items():
    print(f"{name}: {value}")

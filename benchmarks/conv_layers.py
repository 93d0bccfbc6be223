"""One convolution layer's training step on a CPU: jdl's paths against each other and against lax.

For the zoo's layer shapes (batch 128), the time per step of the gradient of
``sum(conv(x, w)²)`` inside a ``lax.scan`` (where jdl's epochs run), for:

* ``jdl``: ``jdl.nn.conv.conv_general_dilated`` as the zoo calls it (the
  patches path for at most 8 input channels or a 1×1 window, else the
  canonical-gradient convolution);
* ``conv``: the canonical-gradient convolution forced (``jdl.nn.conv._conv``);
* ``lax``: ``lax.conv_general_dilated`` with JAX's own gradient.

First layers differentiate the kernel only (their input needs no gradient).

    python benchmarks/conv_layers.py [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

LAYERS = {
    # name: (input shape, kernel shape, strides, padding, gradients of)
    "lenet5.conv1 5x5 1->6": ((128, 28, 28, 1), (5, 5, 1, 6), (1, 1), ((2, 2), (2, 2)), "w"),
    "lenet5.conv2 5x5 6->16": ((128, 14, 14, 6), (5, 5, 6, 16), (1, 1), ((0, 0), (0, 0)), "xw"),
    "cnn_small.conv1 3x3 1->24": ((128, 28, 28, 1), (3, 3, 1, 24), (1, 1), ((1, 1), (1, 1)), "w"),
    "cnn_small.conv2 3x3 24->48": ((128, 14, 14, 24), (3, 3, 24, 48), (1, 1), ((1, 1), (1, 1)), "xw"),
    "resnet18 small stem 3x3 3->64": ((128, 32, 32, 3), (3, 3, 3, 64), (1, 1), ((1, 1), (1, 1)), "w"),
    "resnet18 shortcut 1x1/2 64->128": ((128, 32, 32, 64), (1, 1, 64, 128), (2, 2), ((0, 0), (0, 0)), "xw"),
    "mobilenet_v2 expand 1x1 24->144": ((128, 16, 16, 24), (1, 1, 24, 144), (1, 1), ((0, 0), (0, 0)), "xw"),
    "mobilenet_v2 project 1x1 144->24": ((128, 16, 16, 144), (1, 1, 144, 24), (1, 1), ((0, 0), (0, 0)), "xw"),
}


def step_ms(fn, x, w, wrt: str, steps: int = 20, reps: int = 3) -> float:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jax import lax  # pylint: disable=g-import-not-at-top

  if wrt == "w":
    grad = jax.grad(lambda w: jnp.sum(fn(x, w) ** 2))

    def body(w, _):
      return w - 1e-6 * grad(w), None

    run = jax.jit(lambda w: lax.scan(body, w, None, length=steps)[0]).lower(w).compile()
    args = (w,)
  else:
    grad = jax.grad(lambda x, w: jnp.sum(fn(x, w) ** 2), (0, 1))

    def body(carry, _):
      dx, dw = grad(*carry)
      return (carry[0] - 1e-6 * dx, carry[1] - 1e-6 * dw), None

    run = jax.jit(lambda x, w: lax.scan(body, (x, w), None, length=steps)[0]).lower(x, w).compile()
    args = (x, w)
  jax.block_until_ready(run(*args))
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    jax.block_until_ready(run(*args))
    times.append(time.perf_counter() - t)
  return 1e3 * min(times) / steps


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--json")
  args = p.parse_args(argv)
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jax import lax  # pylint: disable=g-import-not-at-top

  from jdl.nn import conv  # pylint: disable=g-import-not-at-top

  numbers = ("NHWC", "HWIO", "NHWC")
  rng = np.random.default_rng(0)
  rows = {}
  for name, (xs, ws, strides, pads, wrt) in LAYERS.items():
    x = jnp.asarray(rng.normal(size=xs), jnp.float32)
    w = jnp.asarray(rng.normal(size=ws), jnp.float32) * 0.1
    paths = {
        "jdl": lambda x, w: conv.conv_general_dilated(x, w, strides, pads, dimension_numbers=numbers),
        "conv": lambda x, w: conv._conv(x, w, strides, pads, (1, 1), 1, None),  # pylint: disable=protected-access
        "lax": lambda x, w: lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=numbers),
    }
    rows[name] = {k: step_ms(f, x, w, wrt) for k, f in paths.items()}
    r = rows[name]
    print(f"{name}: jdl {r['jdl']:.2f} ms, conv path {r['conv']:.2f} ms, lax {r['lax']:.2f} ms "
          f"(conv/jdl {r['conv'] / r['jdl']:.2f}, lax/jdl {r['lax'] / r['jdl']:.2f})", flush=True)
  from overhead import machine  # pylint: disable=g-import-not-at-top  # benchmarks/overhead.py

  payload = {"machine": machine(), "unit": "ms per step, inside lax.scan, batch 128", "layers": rows}
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())

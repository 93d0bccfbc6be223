"""02 · Backpropagation: the forward and backward pass of a two-layer net by hand, checked against jax.grad.

Syllabus §1 and §3. A network is a composition of tensor operations, so its gradient is the chain rule
applied backwards, layer by layer: each layer turns the gradient of the loss with respect to its output into
the gradients with respect to its parameters and its input. Written out for `y = W2 relu(W1 x + b1) + b2` and
a mean squared error, it must equal what `jax.grad` computes; one gradient step then lowers the loss. The bias
term: a neuron without one cannot fit a line that misses the origin.

    python lessons/02_backpropagation.py [--quick] [--out lessons/out]
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np


def forward(params, x):
  """Every intermediate of the forward pass, kept for the backward pass."""
  z1 = x @ params["W1"] + params["b1"]     # (batch, hidden)
  h1 = jnp.maximum(z1, 0.0)                # ReLU
  y = h1 @ params["W2"] + params["b2"]     # (batch, 1)
  return z1, h1, y


def loss_fn(params, x, t):
  return jnp.mean((forward(params, x)[2] - t) ** 2)


def backward(params, x, t):
  """The chain rule, from the loss back to every parameter."""
  z1, h1, y = forward(params, x)
  n = x.shape[0]
  dy = 2.0 * (y - t) / n                   # dL/dy of the mean squared error
  dW2 = h1.T @ dy                          # y = h1 W2 + b2
  db2 = dy.sum(axis=0)
  dh1 = dy @ params["W2"].T
  dz1 = dh1 * (z1 > 0)                     # ReLU passes the gradient where its input was positive
  dW1 = x.T @ dz1
  db1 = dz1.sum(axis=0)
  return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def run(quick: bool = False, out: str = "lessons/out") -> dict:
  key = jax.random.key(0)
  k1, k2, k3, k4 = jax.random.split(key, 4)
  x = jax.random.normal(k1, (64, 3))
  t = jnp.sin(x.sum(axis=1, keepdims=True))        # a target the net can learn
  params = {"W1": jax.random.normal(k2, (3, 16)) * 0.5, "b1": jnp.full((16,), 0.1),
            "W2": jax.random.normal(k3, (16, 1)) * 0.5, "b2": jnp.zeros((1,))}

  by_hand = backward(params, x, t)
  by_jax = jax.grad(loss_fn)(params, x, t)
  gradient_error = max(float(jnp.max(jnp.abs(by_hand[k] - by_jax[k]))) for k in params)
  print(f"hand-derived gradient vs jax.grad: largest difference {gradient_error:.1e}")

  # Gradient descent: step against the gradient, the loss goes down.
  losses = []
  steps = 50 if quick else 300
  step = jax.jit(lambda params: jax.tree.map(lambda p, g: p - 0.05 * g, params, backward(params, x, t)))
  for _ in range(steps):
    losses.append(float(loss_fn(params, x, t)))
    params = step(params)
  print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f} after {steps} hand-written gradient steps")

  # The bias term: fit y = 2x + 3 with and without one.
  xs = jnp.linspace(-1.0, 1.0, 50)[:, None]
  ys = 2.0 * xs + 3.0
  def fit(with_bias):
    loss = lambda w, b: jnp.mean((xs @ w + b * with_bias - ys) ** 2)  # noqa: E731

    def step(carry, _):
      w, b = carry
      gw, gb = jax.grad(loss, (0, 1))(w, b)
      return (w - 0.1 * gw, b - 0.1 * gb * with_bias), None

    (w, b), _ = jax.lax.scan(step, (jnp.zeros((1, 1)), jnp.zeros((1,))), None, length=200)
    return float(loss(w, b))
  no_bias, bias = fit(0.0), fit(1.0)
  print(f"fitting y = 2x + 3: loss {no_bias:.3f} without a bias, {bias:.5f} with one")

  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  path = pathlib.Path(out) / "02_backpropagation.png"
  path.parent.mkdir(parents=True, exist_ok=True)
  fig, ax = plt.subplots(figsize=(5, 3.2))
  ax.plot(np.arange(steps), losses)
  ax.set_xlabel("gradient step (hand-derived gradients)")
  ax.set_ylabel("mean squared error")
  ax.set_yscale("log")
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return {"gradient_error": gradient_error, "first_loss": losses[0], "last_loss": losses[-1],
          "loss_without_bias": no_bias, "loss_with_bias": bias, "figure": str(path)}


if __name__ == "__main__":
  import argparse

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="a reduced size (what the tests run)")
  parser.add_argument("--out", default="lessons/out", help="where the figures go")
  args = parser.parse_args()
  for name, value in run(quick=args.quick, out=args.out).items():
    print(f"{name}: {value}")

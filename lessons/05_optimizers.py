"""05 · Optimizers: momentum, RMSProp and Adam, Adam's moments by hand, and learning-rate schedules.

Syllabus §3. Plain gradient descent crawls along a narrow valley: each step follows the steep direction and
zig-zags. Momentum averages the steps, RMSProp divides each coordinate by the root of its recent squared
gradients, and Adam does both: its first and second moment estimates m_t and v_t start at zero, so it divides
them by 1 - beta^t (bias correction) before stepping by lr * m̂_t / (sqrt(v̂_t) + eps). The lesson recomputes
Adam's first steps by hand against optax, races the optimizers on an ill-conditioned quadratic and on
Rosenbrock's valley, and draws the cosine and warm-restart (SGDR) schedules.

    python lessons/05_optimizers.py [--quick] [--out lessons/out]
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jdl


def quadratic(p):      # an ill-conditioned bowl: 100x steeper across than along
  return 0.5 * (p[0] ** 2 + 100.0 * p[1] ** 2)


def rosenbrock(p):     # a curved valley; the minimum at (1, 1)
  return (1.0 - p[0]) ** 2 + 100.0 * (p[1] - p[0] ** 2) ** 2


def descend(tx, loss, start, steps):
  """Optimizer steps from ``start``, as one compiled scan; returns the path."""
  def body(carry, _):
    p, s = carry
    updates, s = tx.update(jax.grad(loss)(p), s, p)
    p = optax.apply_updates(p, updates)
    return (p, s), p
  _, path = jax.jit(lambda p: jax.lax.scan(body, (p, tx.init(p)), None, length=steps))(start)
  return np.concatenate([np.asarray(start)[None], np.asarray(path)])


def run(quick: bool = False, out: str = "lessons/out") -> dict:
  # Adam by hand: m_t = b1 m + (1 - b1) g, v_t = b2 v + (1 - b2) g^2, bias-corrected, for three steps.
  lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
  p = jnp.array([1.0, 1.0])
  tx = jdl.optim.create("adam", learning_rate=lr, b1=b1, b2=b2, eps=eps)
  state, m, v, mine = tx.init(p), jnp.zeros(2), jnp.zeros(2), p
  adam_error = 0.0
  for t in range(1, 4):
    g = jax.grad(quadratic)(p)
    updates, state = tx.update(g, state, p)
    p = optax.apply_updates(p, updates)
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g ** 2
    m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
    mine = mine - lr * m_hat / (jnp.sqrt(v_hat) + eps)
    adam_error = max(adam_error, float(jnp.max(jnp.abs(mine - p))))
    print(f"step {t}: m̂ = {np.round(np.asarray(m_hat), 3)}, v̂ = {np.round(np.asarray(v_hat), 2)}, "
          f"p = {np.round(np.asarray(p), 4)}")
  print(f"Adam by hand vs jdl.optim.create('adam'): largest difference {adam_error:.1e}")

  steps = 60 if quick else 300
  # Each at a good rate for this bowl (plain SGD diverges above 2/100, the steep direction's curvature).
  racers = {"sgd": jdl.optim.create("sgd", learning_rate=0.019),
            "momentum": jdl.optim.create("momentum", learning_rate=0.005, momentum=0.9),
            "rmsprop": jdl.optim.create("rmsprop", learning_rate=0.1),
            "adam": jdl.optim.create("adam", learning_rate=0.3)}
  paths = {name: descend(tx, quadratic, jnp.array([-10.0, 1.0]), steps) for name, tx in racers.items()}
  final = {name: float(quadratic(path[-1])) for name, path in paths.items()}
  for name, value in final.items():
    print(f"quadratic after {steps} steps: {name:8s} loss {value:.2e}")
  valley = {name: float(rosenbrock(descend(tx, rosenbrock, jnp.array([-1.5, 2.0]), steps * 5)[-1]))
            for name, tx in {"momentum": jdl.optim.create("momentum", learning_rate=1e-3, momentum=0.9),
                             "adam": jdl.optim.create("adam", learning_rate=0.02)}.items()}
  print("Rosenbrock after", steps * 5, "steps:", {k: f"{v:.2e}" for k, v in valley.items()})

  total = 1000
  schedules = {"cosine": jdl.optim.schedule("cosine", learning_rate=0.1, total_steps=total),
               "warmup_cosine": jdl.optim.schedule("warmup_cosine", learning_rate=0.1, total_steps=total,
                                                   warmup_steps=100),
               "sgdr (warm restarts)": jdl.optim.schedule("sgdr", learning_rate=0.1, total_steps=total,
                                                           cycle_steps=150, cycle_mult=2.0)}

  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  path = pathlib.Path(out) / "05_optimizers.png"
  path.parent.mkdir(parents=True, exist_ok=True)
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
  xs, ys = np.meshgrid(np.linspace(-11, 3, 200), np.linspace(-1.5, 1.5, 200))
  axes[0].contour(xs, ys, 0.5 * (xs ** 2 + 100 * ys ** 2), levels=20, colors="lightgray")
  for name, trace in paths.items():
    axes[0].plot(trace[:, 0], trace[:, 1], ".-", ms=2, lw=0.8, label=name)
  axes[0].set_title(f"an ill-conditioned quadratic, {steps} steps")
  axes[0].legend(fontsize=8)
  t = np.arange(total)
  for name, fn in schedules.items():
    axes[1].plot(t, [float(fn(i)) for i in t], label=name)
  axes[1].set_title("learning-rate schedules")
  axes[1].set_xlabel("update")
  axes[1].legend(fontsize=8)
  for ax in axes:
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return {"adam_by_hand_error": adam_error, "quadratic_loss": final, "rosenbrock_loss": valley, "figure": str(path)}


if __name__ == "__main__":
  import argparse

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="a reduced size (what the tests run)")
  parser.add_argument("--out", default="lessons/out", help="where the figures go")
  args = parser.parse_args()
  for name, value in run(quick=args.quick, out=args.out).items():
    print(f"{name}: {value}")

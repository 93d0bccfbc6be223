"""06 · Activations and initialisation: vanishing gradients, and how ReLU, He initialisation and BatchNorm avoid them.

Syllabus §3, §4 and §7. A sigmoid squashes its input into (0, 1) and its derivative is at most 1/4, so through
ten sigmoid layers with small weights the gradient reaching the first layer is a rounding error: the network
does not learn there. ReLU passes the gradient unchanged where it is active; He initialisation (variance 2/n)
keeps the signal's variance constant through ReLU layers, as Glorot's (2/(n+m)) does for tanh; BatchNorm
re-centres and re-scales every layer's input whatever the weights. Too-small weights make the signal vanish,
too-large ones explode it; a large negative bias kills ReLU units for every input (dead units).

    python lessons/06_activations_and_initialisation.py [--quick] [--out lessons/out]
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

import jdl

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "softplus")


def gradient_norms(activation, kernel_init, batch_norm, x, y, depth):
  """The gradient's norm at every layer's kernel of a ``depth``-layer MLP, first layer first."""
  model = jdl.models.create("mlp", num_classes=10, hidden=(64,) * depth, activation=activation,
                            kernel_init=kernel_init, batch_norm=batch_norm)
  variables = model.init(jax.random.key(0), x)
  loss = jdl.losses.get("sparse_categorical_crossentropy")

  def objective(params):
    out = model.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])[0]
    return loss(out, {"label": y}).mean()

  grads = jax.jit(jax.grad(objective))(variables["params"])
  names = sorted((k for k in grads if k.startswith("Dense")), key=lambda k: int(k.split("_")[1]))
  return np.array([float(jnp.linalg.norm(grads[k]["kernel"])) for k in names])


def run(quick: bool = False, out: str = "lessons/out") -> dict:
  data = jdl.data.load("digits", "train")
  x, y = jnp.asarray(data["inputs"][:256]), jnp.asarray(data["label"][:256])
  depth = 6 if quick else 10
  setups = {"sigmoid, N(0, 0.01²)": ("sigmoid", jdl.nn.get_initializer("normal", stddev=0.01), False),
            "ReLU, He": ("relu", "he_normal", False),
            "ReLU, He, BatchNorm": ("relu", "he_normal", True)}
  norms = {name: gradient_norms(*setup, x, y, depth) for name, setup in setups.items()}
  ratios = {}
  for name, n in norms.items():
    ratios[name] = float(n[0] / n[-1])
    print(f"{name:22s} gradient norm, first / last layer: {ratios[name]:.1e}   by layer: "
          + " ".join(f"{v:.0e}" for v in n))

  # The signal through 20 random layers: its variance by layer for each initialisation.
  depth_signal = 10 if quick else 20
  signals = {
      "ReLU, He (2/n)": jdl.nn.signal_propagation("he_normal", depth=depth_signal, activation="relu"),
      "ReLU, Glorot (2/(n+m))": jdl.nn.signal_propagation("glorot_normal", depth=depth_signal, activation="relu"),
      "tanh, Glorot": jdl.nn.signal_propagation("glorot_normal", depth=depth_signal, activation="tanh"),
      "ReLU, N(0, 0.01²) (too small)": jdl.nn.signal_propagation(jdl.nn.get_initializer("normal", stddev=0.01),
                                                                depth=depth_signal, activation="relu"),
  }
  variance = {name: float(s["variance"][-1]) for name, s in signals.items()}
  dead = jdl.nn.signal_propagation("he_normal", depth=depth_signal, activation="relu", bias=-3.0)["dead_fraction"]
  print("variance after", depth_signal, "layers:", {k: f"{v:.1e}" for k, v in variance.items()})
  print(f"a bias of -3 leaves {dead[-1]:.0%} of the last layer's ReLU units dead (zero for every input)")

  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  path = pathlib.Path(out) / "06_activations_and_initialisation.png"
  path.parent.mkdir(parents=True, exist_ok=True)
  fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
  z = jnp.linspace(-4, 4, 200)
  for name in ACTIVATIONS:
    f = jdl.nn.get_activation(name)
    axes[0].plot(z, f(z), label=name)
  axes[0].set_ylim(-1.5, 4)
  axes[0].set_title("activations")
  axes[0].legend(fontsize=7)
  for name, n in norms.items():
    axes[1].semilogy(range(1, len(n) + 1), n, "o-", label=name)
  axes[1].set_title("gradient norm by layer")
  axes[1].set_xlabel("layer")
  axes[1].legend(fontsize=7)
  for name, s in signals.items():
    axes[2].semilogy(range(1, depth_signal + 1), s["variance"], label=name)
  axes[2].set_title("activation variance by layer")
  axes[2].set_xlabel("layer")
  axes[2].legend(fontsize=7)
  for ax in axes:
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return {"first_over_last_gradient": ratios, "variance_after": variance, "dead_fraction_bias_-3": float(dead[-1]),
          "figure": str(path)}


if __name__ == "__main__":
  import argparse

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="a reduced size (what the tests run)")
  parser.add_argument("--out", default="lessons/out", help="where the figures go")
  args = parser.parse_args()
  for name, value in run(quick=args.quick, out=args.out).items():
    print(f"{name}: {value}")

"""14 · Keras and PyTorch ideas in jdl's terms, side by side (runnable with neither installed).

Syllabus §5. Each pair below is the same idea in three frameworks; the lesson runs the jdl side and checks the
claim that makes it the same:

| idea | Keras | PyTorch | jdl |
|---|---|---|---|
| a model | `Sequential` / functional / subclassed `Model` | `nn.Module` | a Flax linen `nn.Module` (pure: parameters live outside it) |
| parameters vs hyperparameters | `model.weights` vs `compile` / `fit` arguments | `model.parameters()` vs your loop's settings | `variables["params"]` vs the experiment's config |
| training | `model.compile(...)`, `model.fit(...)` | your loop | an experiment file and `jdl train`, or `fit(state, step, data)` |
| gradients | `tf.GradientTape` | `loss.backward()` (autograd) | `jax.value_and_grad(loss)(params)`: a function, no tape |
| zero-grad, backward, step | (inside `fit`) | `opt.zero_grad(); loss.backward(); opt.step()` | `updates, opt_state = tx.update(grads, opt_state); params = optax.apply_updates(params, updates)` |
| forgetting `zero_grad` | | gradients add up over batches (accumulation) | gradients are values, nothing accumulates unless asked: `optax.MultiSteps` |
| inference | `model.predict` | `with torch.no_grad(): model.eval()(x)` | the evaluation step (`train=False`); no gradient is computed unless asked |
| data | `tf.data.Dataset` | `Dataset` + `DataLoader` | a TFDS data source (`jdl.data.data_source`) + jdl's pipeline (`jdl.data.load`, batches on the device) |
| `ToTensor()` | `Rescaling(1/255)` | `ToTensor()` | uint8 images scaled to [0, 1] inside the compiled step |
| the loss | `SparseCategoricalCrossentropy(from_logits=True)` | `CrossEntropyLoss` = log-softmax + NLL | `sparse_categorical_crossentropy` (lesson 03 checks it) |
| saving for inference | `model.save` | `torch.save(model.state_dict())` | Orbax checkpoints in the run directory; `jdl.train.load_run(dir)` |
| early stopping | `callbacks.EarlyStopping` | your loop | `config.early_stopping` (lesson 07) |
| hyperparameter search | KerasTuner's `build_model(hp)` | Optuna | `jdl tune` with `space(trial, config) -> config` |
| ensembles | several models | several models | `config.ensemble.members`, vmapped in one program (lesson 08) |
| mixed precision | `mixed_float16` policy | `torch.autocast` + `GradScaler` | `config.precision = "mixed_bfloat16"` or `"mixed_float16"` (loss scaling) |
| int8 | `model.quantize("int8")` | `torch.ao.quantization` | `jdl quantize RUN_DIR` |

    python lessons/14_keras_pytorch_jdl.py [--quick] [--out lessons/out]
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jdl


def run(quick: bool = False, out: str = "lessons/out") -> dict:
  del quick
  model = jdl.models.create("mlp", num_classes=3, hidden=(8,))
  x = jax.random.normal(jax.random.key(0), (16, 4))
  y = jax.random.randint(jax.random.key(1), (16,), 0, 3)
  params = model.init(jax.random.key(2), x)["params"]
  loss_fn = lambda p, xb, yb: jdl.losses.sparse_categorical_crossentropy(model.apply({"params": p}, xb), yb).mean()  # noqa: E731

  # GradientTape / loss.backward() <-> value_and_grad: the loss and its gradient, from a function.
  loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
  print(f"loss {float(loss):.4f}; gradient leaves: {[tuple(g.shape) for g in jax.tree.leaves(grads)]}")

  # Accumulating gradients over 4 batches of 4 (PyTorch without zero_grad) = one step on the batch of 16.
  sgd = optax.sgd(0.1)
  big = optax.apply_updates(params, sgd.update(grads, sgd.init(params))[0])
  accumulate = optax.MultiSteps(optax.sgd(0.1), every_k_schedule=4)
  state, p = accumulate.init(params), params
  for k in range(4):
    g = jax.grad(loss_fn)(params, x[4 * k:4 * k + 4], y[4 * k:4 * k + 4])
    updates, state = accumulate.update(g, state, p)
    p = optax.apply_updates(p, updates)
  accumulation_error = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(big)))
  print(f"four accumulated micro-batches vs one batch of 16: largest parameter difference {accumulation_error:.1e}")

  # A NumPy array and a tensor sharing memory: on the CPU, np.asarray of a JAX array is a read-only view.
  array = jnp.arange(6.0)
  view = np.asarray(array)
  print(f"np.asarray(jax_array) is a view: writeable={view.flags.writeable}; jnp.asarray(numpy) copies to the device")

  # float16 overflows where bfloat16 does not: the reason for loss scaling under mixed_float16.
  big_number = 70000.0
  with np.errstate(over="ignore"):  # the overflow is the point
    f16, bf16 = float(jnp.float16(big_number)), float(jnp.bfloat16(big_number))
  tiny_gradient = 1e-8
  print(f"{big_number:.0f} in float16: {f16}; in bfloat16: {bf16}. A gradient of {tiny_gradient} in float16: "
        f"{float(jnp.float16(tiny_gradient))} (underflow: what loss scaling prevents)")

  # Parameters vs hyperparameters: the first are learnt, the second chosen (the config).
  config = jdl.config.base_config()
  hyper = {"optimizer.name": config.optimizer.name, "optimizer.learning_rate": config.optimizer.learning_rate,
           "data.batch_size": config.data.batch_size, "epochs": config.epochs}
  n_params = sum(v.size for v in jax.tree.leaves(params))
  print(f"{n_params} parameters (learnt); hyperparameters (chosen): {hyper}")

  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  path = pathlib.Path(out) / "14_precision.png"
  path.parent.mkdir(parents=True, exist_ok=True)
  values = np.logspace(-10, 6, 400)
  fig, ax = plt.subplots(figsize=(6, 3.4))
  for dtype, name in ((jnp.float16, "float16"), (jnp.bfloat16, "bfloat16")):
    with np.errstate(over="ignore"):
      rounded = np.asarray(jnp.asarray(values, dtype).astype(jnp.float32))
    error = np.where(np.isfinite(rounded) & (rounded > 0), np.abs(rounded - values) / values, 1.0)
    ax.loglog(values, np.maximum(error, 1e-5), label=name)
  ax.set_xlabel("value")
  ax.set_ylabel("relative rounding error (1 = lost)")
  ax.set_title("16-bit formats: float16 overflows past 65504 and underflows below 6e-8")
  ax.legend()
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return {"accumulation_error": accumulation_error, "float16_of_70000": f16, "bfloat16_of_70000": bf16,
          "float16_of_1e-8": float(jnp.float16(tiny_gradient)), "numpy_view_writeable": bool(view.flags.writeable),
          "parameters": int(n_params), "figure": str(path)}


if __name__ == "__main__":
  import argparse

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="a reduced size (what the tests run)")
  parser.add_argument("--out", default="lessons/out", help="where the figures go")
  args = parser.parse_args()
  for name, value in run(quick=args.quick, out=args.out).items():
    print(f"{name}: {value}")

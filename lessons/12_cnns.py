"""12 · Convolutional networks: convolution and pooling, activation maps, and the milestones from LeNet to MobileNet.

Syllabus §7. A convolution slides small learned filters over the image: few parameters, shared across positions,
and each output channel is an activation map showing where its filter fires. Pooling shrinks the maps; a dense
head classifies. The milestones grew deeper and then leaner: LeNet-5 (1998), AlexNet (2012), VGG (2014), ResNet
(2015, residual connections let very deep networks train) and MobileNet (2017-18, depthwise-separable
convolutions for phones). The lesson counts their parameters and forward FLOPs (XLA's cost analysis), times a
forward pass of each on small inputs, trains the small ones on Fashion-MNIST for a fixed budget, and draws the
first layer's activation maps. (`--quick` counts parameters only, from shapes, and trains on 600 images.)

    python lessons/12_cnns.py [--quick] [--out lessons/out]
"""

from __future__ import annotations

import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jdl
from jdl.train import create_train_state, fit, make_eval_step, make_train_step

# (name, zoo model, options, year, input for the cost analysis)
MILESTONES = (
    ("LeNet-5", "lenet5", {"padding": 2}, 1998, (28, 28, 1)),
    ("AlexNet", "alexnet", {"hidden": 512}, 2012, (64, 64, 3)),
    ("VGG-11", "vgg11", {"hidden": 512, "pool_size": 1}, 2014, (32, 32, 3)),
    ("ResNet-18", "resnet18", {"stem": "small"}, 2015, (32, 32, 3)),
    ("MobileNetV2", "mobilenet_v2", {"stem": "small"}, 2018, (32, 32, 3)),
)


def _cost(model, shape):
  """Forward FLOPs of one image (XLA's count) and the seconds of one forward pass over a batch of 32."""
  x = jnp.zeros((32, *shape))
  variables = jax.jit(lambda x: model.init(jax.random.key(0), x))(x[:1])
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
  flops = float((forward.lower(variables, x[:1]).compile().cost_analysis() or {}).get("flops", float("nan")))
  forward(variables, x).block_until_ready()
  start = time.perf_counter()
  for _ in range(3):
    forward(variables, x).block_until_ready()
  return flops, (time.perf_counter() - start) / 3


def run(quick: bool = False, out: str = "lessons/out") -> dict:
  table = {}
  for name, zoo, options, year, shape in MILESTONES:
    model = jdl.models.create(zoo, num_classes=10, **options)
    params = jdl.models.count_params(zoo, shape, num_classes=10, **options)  # from shapes: nothing is computed
    flops, seconds = (float("nan"), float("nan")) if quick else _cost(model, shape)  # compiling takes seconds
    table[name] = {"year": year, "parameters": params, "forward_mflops": flops / 1e6,
                   "forward_ms_batch32": seconds * 1000, "input": shape}
    print(f"{name:12s} {year}  {params:>12,} parameters  {flops / 1e6:9.1f} MFLOPs/image  "
          f"{seconds * 1000:8.1f} ms per forward pass of 32 ({shape[0]}x{shape[1]})")

  # A fixed budget on Fashion-MNIST: LeNet-5 against a two-convolution CNN with BatchNorm.
  train = {k: v[:600 if quick else 10000] for k, v in jdl.data.load("fashion_mnist", "train").items()}
  test = {k: v[:200 if quick else 10000] for k, v in jdl.data.load("fashion_mnist", "test").items()}
  accuracy, trained = {}, {}
  small = (("LeNet-5", "lenet5", {"padding": 2}), ("cnn_small", "cnn_small", {"features": (16, 32)}))
  for name, zoo, options in small:
    model = jdl.models.create(zoo, num_classes=10, **options)
    tx = optax.adam(1e-3)
    loss = jdl.losses.get("sparse_categorical_crossentropy")
    result = fit(create_train_state(model, tx, train["image"][:1]), make_train_step(apply_fn=model.apply,
                 loss_fn=loss, tx=tx), train, batch_size=64, epochs=2, progress=False,
                 eval_step=make_eval_step(apply_fn=model.apply, loss_fn=loss), eval_data=test)
    if quick and name == "LeNet-5":
      trained[name] = (model, result.state)
      accuracy[name] = result.history[-1]["eval_accuracy"]
      break
    accuracy[name] = result.history[-1]["eval_accuracy"]
    trained[name] = (model, result.state)
    print(f"{name:10s} test accuracy {accuracy[name]:.4f} after {len(result.history)} epochs of {len(train['label'])}")

  # LeNet-5's first layer: six activation maps of one image.
  model, state = trained["LeNet-5"]
  image = test["image"][:1] / 255.0
  captured = {}

  def keep(next_fun, args, kwargs, context):
    out_ = next_fun(*args, **kwargs)
    if context.method_name == "__call__" and context.module.name == "conv1":
      captured["maps"] = out_
    return out_

  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  with nn.intercept_methods(keep):
    model.apply({"params": state.params}, image)
  maps = np.asarray(jax.nn.relu(captured["maps"]))[0]

  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  path = pathlib.Path(out) / "12_cnns.png"
  path.parent.mkdir(parents=True, exist_ok=True)
  fig, axes = plt.subplots(1, 7, figsize=(12, 2.2))
  axes[0].imshow(image[0, ..., 0], cmap="gray")
  axes[0].set_title("input", fontsize=9)
  for c in range(6):
    axes[c + 1].imshow(maps[..., c], cmap="magma")
    axes[c + 1].set_title(f"conv1 map {c}", fontsize=9)
  for ax in axes:
    ax.axis("off")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return {"milestones": table, "test_accuracy": accuracy, "figure": str(path)}


if __name__ == "__main__":
  import argparse

  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="a reduced size (what the tests run)")
  parser.add_argument("--out", default="lessons/out", help="where the figures go")
  args = parser.parse_args()
  for name, value in run(quick=args.quick, out=args.out).items():
    print(f"{name}: {value}")

"""Convolutional nets: jdl's training throughput against the same networks in a PyTorch eager loop.

Same network (layer by layer), optimizer, batch and input size on both sides;
steady-state training examples/s (compilation and warm-up excluded), the two
sides alternating in one process, ``--rounds`` times; medians and the ratio
jdl / PyTorch per model.

* ``cnn_small``: the `cnn_fashion_mnist` recipe (24/48 channels, 3×3, BatchNorm,
  dropout 0.5), AdamW (lr 3e-3, wd 1e-4), batch 128, 28×28×1;
* ``lenet5``: LeNet-5 (`padding=2`, ReLU, max-pool), Adam 1e-3, batch 128, 28×28×1;
* ``resnet18``: ResNet-18 with the small stem, SGD momentum 0.9, batch 128, 32×32×3;
* ``mobilenet_v2``: MobileNetV2 with the small stem, SGD momentum 0.9, batch 128, 32×32×3.

jdl trains with ``jdl.train.fit`` (the path `jdl train` takes: data on the device,
an epoch as a compiled ``lax.scan``; ``--jdl-path stream`` streams batches
instead); PyTorch with a plain loop over batches of a tensor in memory
(``torch.set_num_threads(os.cpu_count())``, oneDNN). Inputs are random (speed
only depends on shapes).

    python benchmarks/compare_torch_conv.py [--models cnn_small,lenet5] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np

MODELS = {
    # name: (jdl model, options, input shape, optimizer, batch, steps per measurement)
    "cnn_small": ("cnn_small", {"features": (24, 48), "kernel_size": 3}, (28, 28, 1), "adamw", 128, 96),
    "lenet5": ("lenet5", {"padding": 2}, (28, 28, 1), "adam", 128, 192),
    "resnet18": ("resnet18", {"stem": "small"}, (32, 32, 3), "momentum", 128, 6),
    "mobilenet_v2": ("mobilenet_v2", {"stem": "small"}, (32, 32, 3), "momentum", 128, 6),
}


def _data(shape, n, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (n, *shape)).astype(np.uint8), rng.integers(0, 10, n).astype(np.int32)


# --------------------------------------------------------------------------- #
# jdl.
# --------------------------------------------------------------------------- #


def jdl_throughput(name: str, path: str, micro_batches: int = 1) -> float:
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  import jdl.losses  # pylint: disable=g-import-not-at-top
  import jdl.models  # pylint: disable=g-import-not-at-top
  import jdl.optim  # pylint: disable=g-import-not-at-top
  from jdl.train import create_train_state, fit, make_train_step  # pylint: disable=g-import-not-at-top

  model_name, options, shape, opt, batch, steps = MODELS[name]
  model = jdl.models.create(model_name, num_classes=10, **options)
  hparams = {"adamw": {"learning_rate": 3e-3, "weight_decay": 1e-4}, "adam": {"learning_rate": 1e-3},
             "momentum": {"learning_rate": 0.05, "momentum": 0.9}}[opt]
  tx = jdl.optim.create(opt, **hparams)
  state = create_train_state(model, tx, jnp.zeros((1, *shape)), seed=0)
  step = make_train_step(apply_fn=model.apply, loss_fn=jdl.losses.get("sparse_categorical_crossentropy"), tx=tx,
                         micro_batches=micro_batches)
  images, labels = _data(shape, steps * batch)
  result = fit(state, step, {"image": images, "label": labels}, batch_size=batch, epochs=3, progress=False,
               data_on_device={"scan": True, "stream": False}[path], strategy="single")
  return statistics.median(h["examples_per_second"] for h in result.history[1:])


# --------------------------------------------------------------------------- #
# PyTorch: the same networks, layer by layer.
# --------------------------------------------------------------------------- #


def torch_model(name: str):
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  def bn(c):
    return nn.BatchNorm2d(c, momentum=0.1, eps=1e-5)

  if name == "cnn_small":
    return nn.Sequential(nn.Conv2d(1, 24, 3, padding=1, bias=False), bn(24), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(24, 48, 3, padding=1, bias=False), bn(48), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Dropout(0.5), nn.Linear(7 * 7 * 48, 10))
  if name == "lenet5":
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                         nn.Linear(84, 10))

  class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
      super().__init__()
      self.conv1, self.bn1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), bn(c_out)
      self.conv2, self.bn2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), bn(c_out)
      self.down = None
      if stride != 1 or c_in != c_out:
        self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), bn(c_out))

    def forward(self, x):
      y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
      return torch.relu(y + (x if self.down is None else self.down(x)))

  if name == "resnet18":
    layers = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), bn(64), nn.ReLU()]
    c = 64
    for i, width in enumerate((64, 128, 256, 512)):
      for j in range(2):
        layers.append(BasicBlock(c, width, 2 if i > 0 and j == 0 else 1))
        c = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10))

  class InvertedResidual(nn.Module):
    def __init__(self, c_in, c_out, stride, t):
      super().__init__()
      hidden = int(round(c_in * t))
      layers = []
      if t != 1:
        layers += [nn.Conv2d(c_in, hidden, 1, bias=False), bn(hidden), nn.ReLU6()]
      layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), bn(hidden), nn.ReLU6(),
                 nn.Conv2d(hidden, c_out, 1, bias=False), bn(c_out)]
      self.body = nn.Sequential(*layers)
      self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
      return x + self.body(x) if self.residual else self.body(x)

  if name == "mobilenet_v2":
    from jdl.models.mobilenet import INVERTED_RESIDUAL_SETTING  # pylint: disable=g-import-not-at-top

    layers = [nn.Conv2d(3, 32, 3, 1, 1, bias=False), bn(32), nn.ReLU6()]
    c = 32
    for t, width, n, s in INVERTED_RESIDUAL_SETTING:
      for j in range(n):
        layers.append(InvertedResidual(c, width, s if j == 0 else 1, t))
        c = width
    layers += [nn.Conv2d(c, 1280, 1, bias=False), bn(1280), nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
               nn.Dropout(0.2), nn.Linear(1280, 10)]
    return nn.Sequential(*layers)
  raise ValueError(name)


def torch_throughput(name: str) -> float:
  import torch  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(os.cpu_count() or 1)
  _, _, shape, opt, batch, steps = MODELS[name]
  torch.manual_seed(0)
  model = torch_model(name)
  params = model.parameters()
  optimizer = {"adamw": lambda: torch.optim.AdamW(params, lr=3e-3, weight_decay=1e-4),
               "adam": lambda: torch.optim.Adam(params, lr=1e-3),
               "momentum": lambda: torch.optim.SGD(params, lr=0.05, momentum=0.9)}[opt]()
  images, labels = _data(shape, steps * batch)
  x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # NCHW, PyTorch's layout
  y = torch.from_numpy(labels.astype(np.int64))
  loss_fn = torch.nn.CrossEntropyLoss()
  model.train()
  rates = []
  for epoch in range(3):
    start = time.perf_counter()
    for i in range(steps):
      xb = x[i * batch:(i + 1) * batch].float().div_(255.0)
      optimizer.zero_grad(set_to_none=True)
      loss = loss_fn(model(xb), y[i * batch:(i + 1) * batch])
      loss.backward()
      optimizer.step()
    rates.append(steps * batch / (time.perf_counter() - start))
  return statistics.median(rates[1:])


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--models", default=",".join(MODELS))
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--jdl-path", choices=("scan", "stream"), default="scan")
  p.add_argument("--micro-batches", type=int, default=1,
                 help="jdl's micro_batches (independent parts of each batch the CPU runs at once; BatchNorm then "
                      "normalises per part, unlike PyTorch's side): 1 = the same computation on both sides")
  p.add_argument("--json")
  args = p.parse_args(argv)
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  results: dict[str, Any] = {}
  for name in args.models.split(","):
    jdl_rates, torch_rates = [], []
    for r in range(args.rounds):
      jdl_rates.append(jdl_throughput(name, args.jdl_path, args.micro_batches))
      torch_rates.append(torch_throughput(name))
      print(f"{name} round {r + 1}: jdl {jdl_rates[-1]:,.0f} ex/s, torch {torch_rates[-1]:,.0f} ex/s", flush=True)
    j, t = statistics.median(jdl_rates), statistics.median(torch_rates)
    results[name] = {"jdl_examples_per_second": j, "torch_examples_per_second": t, "ratio_vs_torch": j / t,
                     "jdl_rounds": jdl_rates, "torch_rounds": torch_rates, "batch": MODELS[name][4],
                     "input_shape": list(MODELS[name][2]), "optimizer": MODELS[name][3]}
    print(f"{name}: jdl {j:,.0f} ex/s, torch {t:,.0f} ex/s, ratio {j / t:.2f}", flush=True)
  payload = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                         "python": platform.python_version(), "jax": jax.__version__, "torch": torch.__version__,
                         "torch_threads": torch.get_num_threads()},
             "jdl_path": args.jdl_path, "micro_batches": args.micro_batches, "rounds": args.rounds,
             "models": results}
  if args.json:
    with open(args.json, "w") as f:
      f.write(json.dumps(payload, indent=2) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""The course MLP as a PyTorch eager loop on the CPU (2 threads on the reference machine).

Prints one JSON line with steady-state examples/s (median of epochs after the first).
"""

import argparse
import gzip
import json
import os
import statistics
import time

import numpy as np


def read_idx(path):
  with gzip.open(path, "rb") as f:
    raw = f.read()
  ndim = raw[3]
  shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--epochs", type=int, default=5)
  args = parser.parse_args()
  import torch

  torch.set_num_threads(os.cpu_count() or 1)
  root = os.environ.get("JDL_DATA_DIR") or "/usr/share/datasets/fashion-mnist"
  x = torch.from_numpy(read_idx(f"{root}/train-images-idx3-ubyte.gz").reshape(-1, 784).astype("float32") / 255)
  y = torch.from_numpy(read_idx(f"{root}/train-labels-idx1-ubyte.gz").astype("int64"))
  model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10))
  opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
  loss_fn = torch.nn.CrossEntropyLoss()
  times = []
  n, batch = len(x), 128
  for _ in range(args.epochs):
    start = time.perf_counter()
    perm = torch.randperm(n)
    for i in range(0, n - batch + 1, batch):
      idx = perm[i:i + batch]
      opt.zero_grad(set_to_none=True)
      logits = model(x[idx])
      loss = loss_fn(logits, y[idx])
      loss.backward()
      opt.step()
    times.append(time.perf_counter() - start)
  steps = n // batch
  print(json.dumps({"examples_per_second": statistics.median(steps * batch / t for t in times[1:]),
                    "epoch_seconds": times, "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
  main()

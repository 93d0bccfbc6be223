"""The course MLP in Keras 3 (set KERAS_BACKEND=jax), as a Keras user writes it.

Prints one JSON line: steady-state examples/s (median of epochs after the
first) and, with --evaluate, the test accuracy. The data comes from the same
IDX files jdl reads (keras.datasets would download them).
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
  parser.add_argument("--evaluate", action="store_true")
  args = parser.parse_args()
  root = os.environ.get("JDL_DATA_DIR") or "/usr/share/datasets/fashion-mnist"
  x = read_idx(f"{root}/train-images-idx3-ubyte.gz").reshape(-1, 784).astype("float32") / 255
  y = read_idx(f"{root}/train-labels-idx1-ubyte.gz").astype("int32")

  import keras

  model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(512, activation="relu"),
                            keras.layers.Dense(10, activation="softmax")])
  model.compile(optimizer=keras.optimizers.RMSprop(1e-3), loss="sparse_categorical_crossentropy",
                metrics=["accuracy"])

  class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
      self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
      times.append(time.perf_counter() - self.start)

  times = []
  model.fit(x, y, batch_size=128, epochs=args.epochs, verbose=0, callbacks=[Timer()])
  steps = -(-len(x) // 128)
  out = {"examples_per_second": statistics.median(len(x) / t for t in times[1:]),
         "epoch_seconds": times, "keras": keras.__version__, "steps_per_epoch": steps}
  if args.evaluate:
    xt = read_idx(f"{root}/t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype("float32") / 255
    yt = read_idx(f"{root}/t10k-labels-idx1-ubyte.gz").astype("int32")
    out["test_accuracy"] = float(model.evaluate(xt, yt, verbose=0)[1])
  print(json.dumps(out))


if __name__ == "__main__":
  main()

"""The course's first network written from scratch in plain JAX (Chollet, ch. 2).

No Flax, no Optax: a naive dense layer, a sequential container, a batch
generator, one training step with an explicit ``jax.grad`` and a hand-written
SGD update, ``fit`` and ``evaluate``. Run it directly:

    python experiments/mlp_from_scratch.py [--epochs 5] [--learning-rate 0.1]

It prints the test accuracy (about 0.85 on Fashion-MNIST after 5 epochs). This
file is a lesson, not a ``jdl train`` config: it has no ``get_config``.
"""

from __future__ import annotations

import argparse
import math
import time

import jax
import jax.numpy as jnp
import numpy as np


class NaiveDense:
  """``activation(x @ W + b)`` with b = 0 and W ~ U(-a, a), a = √(6 / (fan_in + fan_out)).

  The book draws W from U(0, 0.1): all-positive weights make the 784-input sums
  large, the softmax saturates, and only a tiny learning rate trains at all. The
  centred Glorot range keeps activations of order one, so plain SGD at 0.1 works.
  """

  def __init__(self, key, input_size, output_size, activation):
    self.activation = activation
    limit = math.sqrt(6.0 / (input_size + output_size))
    self.W = jax.random.uniform(key, (input_size, output_size), minval=-limit, maxval=limit)
    self.b = jnp.zeros((output_size,))

  def __call__(self, params, inputs):
    W, b = params
    return self.activation(inputs @ W + b[None, :])

  @property
  def weights(self):
    return [self.W, self.b]


class NaiveSequential:
  """Chains layers; its weights are the list of every layer's (W, b)."""

  def __init__(self, layers):
    self.layers = layers

  def __call__(self, weights, inputs):
    x = inputs
    for layer, params in zip(self.layers, weights):
      x = layer(params, x)
    return x

  @property
  def weights(self):
    return [tuple(layer.weights) for layer in self.layers]


class BatchGenerator:
  """Yields consecutive batches of ``(images, labels)``."""

  def __init__(self, images, labels, batch_size=128):
    assert len(images) == len(labels)
    self.index = 0
    self.images, self.labels, self.batch_size = images, labels, batch_size
    self.num_batches = math.ceil(len(images) / batch_size)

  def next(self):
    images = self.images[self.index:self.index + self.batch_size]
    labels = self.labels[self.index:self.index + self.batch_size]
    self.index += self.batch_size
    return images, labels


def sparse_categorical_crossentropy(probabilities, labels):
  picked = jnp.take_along_axis(probabilities, labels[:, None], axis=1)[:, 0]
  return -jnp.log(jnp.clip(picked, 1e-7, 1.0))


def make_training_step(model, learning_rate):
  """One step: forward, the loss, ``jax.grad`` of it, and ``w ← w − lr·∂L/∂w``."""

  def loss_fn(weights, images, labels):
    predictions = model(weights, images)
    return jnp.mean(sparse_categorical_crossentropy(predictions, labels))

  @jax.jit
  def one_training_step(weights, images, labels):
    loss, gradients = jax.value_and_grad(loss_fn)(weights, images, labels)
    weights = jax.tree.map(lambda w, g: w - learning_rate * g, weights, gradients)
    return weights, loss

  return one_training_step


def fit(model, images, labels, epochs, batch_size=128, learning_rate=0.1):
  weights = model.weights
  step = make_training_step(model, learning_rate)
  for epoch in range(epochs):
    batches = BatchGenerator(images, labels, batch_size)
    losses = []
    for _ in range(batches.num_batches):
      images_batch, labels_batch = batches.next()
      weights, loss = step(weights, images_batch, labels_batch)
      losses.append(loss)
    print(f"epoch {epoch + 1}: loss {float(jnp.mean(jnp.stack(losses))):.4f}")
  return weights


def evaluate(model, weights, images, labels):
  predictions = np.asarray(model(weights, images))
  return float(np.mean(np.argmax(predictions, axis=1) == labels))


def main(argv=None) -> float:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="fashion_mnist")
  parser.add_argument("--epochs", type=int, default=5)
  parser.add_argument("--learning-rate", type=float, default=0.1)
  parser.add_argument("--limit", type=int, default=0, help="use only the first N training examples")
  args = parser.parse_args(argv)

  from jdl import data  # only for the arrays; everything else here is plain JAX

  train, test = data.load(args.dataset, "train"), data.load(args.dataset, "test")
  if args.limit:
    train = {k: v[:args.limit] for k, v in train.items()}
  flatten = lambda x: x.reshape(len(x), -1).astype(np.float32) / 255.0  # noqa: E731
  train_images, test_images = flatten(train["image"]), flatten(test["image"])

  key1, key2 = jax.random.split(jax.random.PRNGKey(0))
  model = NaiveSequential([
      NaiveDense(key1, 28 * 28, 512, jax.nn.relu),
      NaiveDense(key2, 512, 10, jax.nn.softmax),
  ])
  start = time.perf_counter()
  weights = fit(model, train_images, train["label"], epochs=args.epochs, learning_rate=args.learning_rate)
  accuracy = evaluate(model, weights, test_images, test["label"])
  print(f"test accuracy: {accuracy:.4f} ({time.perf_counter() - start:.1f} s)")
  return accuracy


if __name__ == "__main__":
  main()

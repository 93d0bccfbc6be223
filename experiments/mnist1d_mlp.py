"""MNIST-1D, multi-layer perceptron (Greydanus 2020, "Scaling down deep learning").

The paper's protocol: an MLP with two hidden layers of 100 ReLU units
(`mlp`, `hidden=(100, 100)`; 15,210 parameters), Adam with a constant learning
rate of 1e-2, batch 100, 6000 steps (150 epochs of the paper's 4000 training signals),
evaluated on the 1000 test signals. jdl holds the last 400 training signals out
for validation (its default, so the eval_* curves never see the test set) and
trains on 3600: 150 epochs are 5400 steps. `--config.data.train_split=train`
`--config.data.eval_split=test` is the paper's exact protocol. Published: 68%
(paper). The paper's MLP adds a skip connection around the second hidden layer
(``h + relu(W₂h)``); the zoo's `mlp` is the plain stack, same parameter count.

    jdl train mnist1d_mlp --config.progress=false

Measured over seeds 0-4 (docs/results.md, benchmarks/results/recipes_cpu.md): test accuracy
0.661 ± 0.006.
"""

from jdl.config import base_config


def get_config():
  config = base_config()
  config.name = "mnist1d_mlp"
  config.data.name = "mnist1d"
  config.data.test_split = "test"
  config.data.batch_size = 100
  config.model.name = "mlp"
  config.model.options.hidden = (100, 100)
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-2
  config.epochs = 150  # 150 × 40 steps = 6000 steps, the paper's budget
  return config

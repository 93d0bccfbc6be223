"""MNIST-1D, logistic regression (Greydanus 2020, "Scaling down deep learning").

The paper's protocol: `logreg` (one linear layer on the 40 values of the
signal; 410 parameters), Adam with a constant learning rate of 1e-2, batch 100,
6000 steps (150 epochs of the paper's 4000 training signals), evaluated on the
1000 test signals. jdl holds the last 400 training signals out for validation
(its default, so the eval_* curves never see the test set) and trains on 3600:
150 epochs are 5400 steps. `--config.data.train_split=train
--config.data.eval_split=test` is the paper's exact protocol. Published: 32% (paper).

    jdl train mnist1d_logreg --config.progress=false

Measured over seeds 0-4 (docs/results.md, benchmarks/results/recipes_cpu.md): test accuracy
0.316 ± 0.004.
"""

from jdl.config import base_config


def get_config():
  config = base_config()
  config.name = "mnist1d_logreg"
  config.data.name = "mnist1d"
  config.data.test_split = "test"
  config.data.batch_size = 100
  config.model.name = "logreg"
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-2
  config.epochs = 150  # 150 × 40 steps = 6000 steps, the paper's budget
  return config

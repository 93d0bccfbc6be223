"""Diabetes progression (scikit-learn's bundled set): regression with an MSE loss.

The target (disease progression one year after baseline) is standardized with
the train split's mean and standard deviation (docs/data.md), so the loss and
the metrics are in standard deviations of the target; multiply MAE and RMSE by
`jdl.data.target_stats("diabetes")[1]` (76.97) for the original units. The model
is a small MLP with one output; metrics streamed over the 88 test examples:
MAE, RMSE (of the whole set, not a mean of batch RMSEs) and R². The last 10%
of the train split (35 patients) is the validation split of the eval_* curves.

    jdl train diabetes_regression --workdir /tmp/diabetes --config.progress=false

Measured over seeds 0-4 (docs/results.md, benchmarks/results/recipes_cpu.md): test MAE
0.567, RMSE 0.704 (standardized; 43.6 and 54.2 in the original units), R² 0.506, after
100 epochs.
"""

from jdl.config import base_config


def get_config():
  config = base_config()
  config.name = "diabetes_regression"
  config.data.name = "diabetes"
  config.data.batch_size = 32
  config.data.eval_batch_size = 32  # 88 test examples: the last batch is padded
  config.model.name = "mlp"
  config.model.options.hidden = (32,)
  config.loss = "mse"
  config.metrics = ("mae", "rmse", "r2")
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.epochs = 100
  config.checkpoint.monitor = "eval_loss"
  return config

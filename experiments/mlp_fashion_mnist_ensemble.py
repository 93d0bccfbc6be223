"""Five copies of the course's first network, trained together as an ensemble (``config.ensemble``).

The default experiment (`mlp_fashion_mnist`: Dense(512, relu) → Dense(10),
RMSprop 1e-3 with a cosine decay, batch 128, 5 epochs) with
``config.ensemble.members = 5``: five networks with their own random
initialisations, vmapped in one compiled step, each trained on its own loss
as if alone. The ensemble predicts the mean of their probabilities; every
epoch logs each member's validation accuracy, the majority vote's and how
often two members disagree, and `summary.json` has the same on the test split.

    jdl train mlp_fashion_mnist_ensemble --workdir runs/ensemble
    python benchmarks/ensemble.py      # the figures of docs/ensembles.md

Diversity comes from the initialisation alone here (no dropout; the members
see the same batches): Fort, Hu and Lakshminarayanan (2019) found random
initialisations the main source of an ensemble's diversity.
"""

from jdl.config import base_config


def get_config():
  config = base_config()
  config.name = "mlp_fashion_mnist_ensemble"
  config.data.name = "fashion_mnist"
  config.data.batch_size = 128
  config.model.name = "mlp"
  config.model.options.hidden = (512,)
  config.optimizer.name = "rmsprop"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule.name = "cosine"
  config.epochs = 5
  config.ensemble.members = 5
  return config

"""Why deep sigmoid networks stop learning: a 10-layer MLP on Fashion-MNIST with training diagnostics.

Nine hidden layers of 256 sigmoid units and a naive initialisation (weights
N(0, 0.01²), the practice before Glorot & Bengio 2010), SGD with momentum 0.9
(lr 0.05), batch 128, 5 epochs; ``config.diagnostics`` logs every layer's
gradient norm, update ratio, activation statistics and dead-unit fraction each
epoch. The gradient reaching the first layer is orders of magnitude smaller
than the last layer's and the network barely learns. The two fixes of the
course, one override each:

    jdl train mlp_deep_diagnostics --workdir runs/deep/sigmoid_naive
    jdl train mlp_deep_diagnostics --workdir runs/deep/relu_he \\
        --config.model.options.activation=relu --config.model.options.kernel_init=he_normal
    jdl train mlp_deep_diagnostics --workdir runs/deep/relu_he_bn \\
        --config.model.options.activation=relu --config.model.options.kernel_init=he_normal \\
        --config.model.options.batch_norm=true
    jdl visualize runs/deep/sigmoid_naive runs/deep/relu_he runs/deep/relu_he_bn --what diagnostics

(docs/visualize.md has the figure and the numbers.)
"""

from jdl.config import base_config


def get_config():
  config = base_config()
  config.name = "mlp_deep_diagnostics"
  config.data.name = "fashion_mnist"
  config.data.batch_size = 128
  config.model.name = "mlp"
  config.model.options.hidden = (256,) * 9
  config.model.options.activation = "sigmoid"
  config.model.options.kernel_init = "normal"  # N(0, 0.01²)
  config.model.options.batch_norm = False
  config.loss = "sparse_categorical_crossentropy"
  config.optimizer.name = "momentum"
  config.optimizer.learning_rate = 0.05
  config.optimizer.hparams.momentum = 0.9
  config.epochs = 5
  config.diagnostics.enabled = True
  config.diagnostics.examples = 512
  return config

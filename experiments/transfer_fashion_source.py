"""The source task of the transfer-learning lesson: a small CNN trained on Fashion-MNIST's first five classes.

T-shirt/top, Trouser, Pullover, Dress and Coat (27,000 training images, 3,000
held out for validation); the `cnn_fashion_mnist` network and optimizer, 8
epochs. Its convolutions are what `transfer_fashion_target` starts from, on the
five classes this network never saw (Sandal, Shirt, Sneaker, Bag, Ankle boot).

    jdl train transfer_fashion_source          # writes runs/transfer_fashion_source
    jdl train transfer_fashion_target          # then: few labels, features of this network

Test accuracy on those five classes: 0.9322 (seed 0, 72 s in all on a 2-core
CPU). docs/transfer.md; the table is benchmarks/results/transfer_cpu.md.
"""

from jdl.config import base_config


def get_config():
  config = base_config()
  config.name = "transfer_fashion_source"
  config.data.name = "fashion_mnist"
  config.data.classes = (0, 1, 2, 3, 4)
  config.data.batch_size = 128
  config.micro_batches = 4
  config.model.name = "cnn_small"
  config.model.options.features = (24, 48)
  config.model.options.kernel_size = 3
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 3e-3
  config.optimizer.hparams.weight_decay = 1e-4
  config.optimizer.schedule.name = "warmup_cosine"
  config.optimizer.schedule.warmup_steps = 100
  config.epochs = 8
  return config

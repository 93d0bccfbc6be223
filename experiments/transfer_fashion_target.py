"""Transfer learning with few labels: Fashion-MNIST's last five classes from the features of the first five.

The target task: Sandal, Shirt, Sneaker, Bag and Ankle boot with 50 labelled
training images per class (250 in all; `data.train_per_class`, drawn with the
seed), tested on their 5,000 test images. The network starts from
`transfer_fashion_source`'s run (`init_from`): every parameter but the new
5-class head (`init_from_skip`). As shipped this is feature extraction: the
convolutions and their BatchNorm layers are frozen (`optimizer.freeze`; the
BatchNorm layers then run in inference mode), their features are computed once
(`cache_features`) and only the head trains, in a fraction of a second.

    jdl train transfer_fashion_source                    # once: the source network
    jdl train transfer_fashion_target                    # feature extraction
    jdl train transfer_fashion_target --workdir runs/finetune \
        --config.optimizer.freeze='()' --config.cache_features=false \
        --config.optimizer.groups="{'backbone': {'params': ('conv_*', 'bn_*'), 'learning_rate_scale': 0.1}}"
    jdl train transfer_fashion_target --workdir runs/scratch \
        --config.init_from='' --config.init_from_skip='()' --config.optimizer.freeze='()' \
        --config.cache_features=false                    # the same network from a random start

`python benchmarks/transfer.py` runs the three at 10, 50 and 500 labels per
class over seeds 0-4 (benchmarks/results/transfer_cpu.md, docs/transfer.md). At
50 labels per class (400 updates): from scratch 0.9320 ± 0.0059, feature
extraction 0.9424 ± 0.0034, fine-tuning 0.9442 ± 0.0045 test accuracy; the head
on cached features trains an epoch 16x faster than on the frozen network.
"""

from jdl.config import base_config


def get_config():
  config = base_config()
  config.name = "transfer_fashion_target"
  config.data.name = "fashion_mnist"
  config.data.classes = (5, 6, 7, 8, 9)
  config.data.train_per_class = 50
  config.data.batch_size = 50
  config.model.name = "cnn_small"
  config.model.options.features = (24, 48)
  config.model.options.kernel_size = 3
  config.init_from = "runs/transfer_fashion_source"
  config.init_from_skip = ("fc",)
  config.optimizer.freeze = ("conv_*", "bn_*")
  config.cache_features = True
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 3e-3
  config.optimizer.hparams.weight_decay = 1e-4
  config.optimizer.schedule.name = "cosine"
  config.epochs = 80  # 400 updates of 50 images
  return config

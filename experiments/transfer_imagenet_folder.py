"""Your own photos on ImageNet features: ResNet-18 from torchvision's weights, a new head on cached features.

A folder of class folders (`ROOT/train/CLASS/*.jpg` and `ROOT/test/CLASS/*.jpg`, or `ROOT/CLASS/*.jpg`),
resized to 160×160 with the aspect ratio kept, and torchvision's ImageNet ResNet-18
(`resnet18-f37072fd.pth`, https://download.pytorch.org/models/resnet18-f37072fd.pth). The network is
frozen, BatchNorm in inference mode, its 512 features computed once per split; a new head trains on
them with Adam (docs/transfer.md). Name your folder and weights:

    jdl train transfer_imagenet_folder \
        --config.data.name='folder:cats_vs_dogs?size=160' --config.init_from=resnet18-f37072fd.pth

This experiment needs those two files; it is not run by the tests (which run the same settings on a
folder they write and a randomly initialised torchvision-layout ResNet-18: tests/test_transfer.py).
"""

from jdl.config import base_config


def get_config():
  config = base_config()
  config.name = "transfer_imagenet_folder"
  config.data.name = "folder:cats_vs_dogs?size=160"
  config.data.batch_size = 32
  config.data.eval_batch_size = 64
  config.model.name = "resnet18"
  config.model.options.preprocess = "torchvision"
  config.init_from = "resnet18-f37072fd.pth"
  config.init_from_skip = ("fc",)
  config.optimizer.freeze = ("stem_*", "layer*")
  config.cache_features = True
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.epochs = 20
  return config

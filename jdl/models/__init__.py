"""The model zoo: Flax linen modules by name.

Every model is called as ``model.apply(variables, x, train=...)`` on NHWC (or
``(batch, features)`` / ``(batch, time, features)``) inputs and returns float32
logits of shape ``(batch, num_classes)``. Dropout draws from the ``'dropout'``
rng stream; batch statistics live in the ``'batch_stats'`` collection.

>>> import jdl.models
>>> model = jdl.models.create("mlp", num_classes=10, hidden=(32,))
>>> "resnet18" in jdl.models.list_models()
True

See docs/models.md for the list of models and their options.
"""

from jdl.models._registry import MODELS, create, default_input_shape, list_models, model_options, register
from jdl.models.alexnet import AlexNet
from jdl.models.mlp import MLP, LogReg
from jdl.models.mobilenet import MobileNetV2
from jdl.models.resnet import ResNet
from jdl.models.rnn import RNNClassifier
from jdl.models.small_cnn import CNN1D, CNNSmall, LeNet5
from jdl.models.summarize import count_params, summary, summary_main
from jdl.models.vgg import VGG
from jdl.models.pretrained import from_keras, from_torchvision, load_pretrained, read_keras_weights, read_torch_state_dict
from jdl.models import _registry

_registry.MODELS.seal()  # the zoo above is built in; later registrations are the user's

__all__ = [
    "CNN1D",
    "MLP",
    "MODELS",
    "VGG",
    "AlexNet",
    "CNNSmall",
    "LeNet5",
    "LogReg",
    "MobileNetV2",
    "RNNClassifier",
    "ResNet",
    "count_params",
    "create",
    "from_keras",
    "from_torchvision",
    "load_pretrained",
    "read_keras_weights",
    "read_torch_state_dict",
    "default_input_shape",
    "list_models",
    "model_options",
    "register",
    "summary",
    "summary_main",
]

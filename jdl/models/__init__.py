"""The model zoo: Flax linen modules by name.

Every model is called as ``model.apply(variables, x, train=...)`` on NHWC (or
``(batch, features)`` / ``(batch, time, features)``) inputs and returns float32
logits. Dropout draws from the ``'dropout'`` rng stream; batch statistics live in
the ``'batch_stats'`` collection.

>>> import jdl.models
>>> model = jdl.models.create("mlp", num_classes=10, hidden=(32,))
>>> "mlp" in jdl.models.list_models()
True
"""

from jdl.models._registry import create, list_models, register
from jdl.models.mlp import MLP

__all__ = ["MLP", "create", "list_models", "register"]

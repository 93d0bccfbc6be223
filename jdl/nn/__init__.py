"""Building blocks: activations and initializers by name, layers, residual blocks.

>>> import jdl.nn
>>> act = jdl.nn.get_activation("leaky_relu", negative_slope=0.1)
>>> init = jdl.nn.get_initializer("he_normal")
>>> layer = jdl.nn.Conv(16, (3, 3), padding=1, kernel_init="he_normal")
"""

from jdl.nn.activations import PReLU, get_activation, list_activations
from jdl.nn.blocks import BasicBlock, BottleneckBlock, InvertedResidual
from jdl.nn.diagnostics import record_activation, signal_propagation
from jdl.nn.initializers import Initializer, get_initializer, list_initializers
from jdl.nn.layers import (
    BatchNorm,
    Conv,
    Dense,
    Dropout,
    Flatten,
    LayerNorm,
    adaptive_avg_pool,
    avg_pool,
    global_avg_pool,
    global_max_pool,
    max_pool,
)

__all__ = [
    "BasicBlock",
    "BatchNorm",
    "BottleneckBlock",
    "Conv",
    "Dense",
    "Dropout",
    "Flatten",
    "Initializer",
    "InvertedResidual",
    "LayerNorm",
    "PReLU",
    "adaptive_avg_pool",
    "avg_pool",
    "get_activation",
    "get_initializer",
    "global_avg_pool",
    "global_max_pool",
    "list_activations",
    "list_initializers",
    "max_pool",
    "record_activation",
    "signal_propagation",
]

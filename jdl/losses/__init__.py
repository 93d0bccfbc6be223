"""Per-example losses, label encoders, loss combinators and the loss registry.

A loss, as the train step sees it, is ``loss_fn(outputs, batch) -> per-example
array``; the caller reduces it (with the batch's ``mask`` when there is one, see
:func:`masked_mean`). The plain functions (``sparse_categorical_crossentropy(
logits, labels)``) are the building blocks and take ``(outputs, targets)`` in
that order, like optax; ``get(name, **options)`` turns a name into the
``(outputs, batch)`` form, reading the target from ``batch["label"]``.

Which loss for which output layer:

* one sigmoid unit (binary): ``binary_crossentropy`` on the logit;
* softmax over C classes: ``sparse_categorical_crossentropy`` (integer labels)
  or ``categorical_crossentropy`` (one-hot / soft labels);
* L independent sigmoids (multi-label): ``multilabel_binary_crossentropy``;
* real-valued outputs (regression): ``mse``, ``mae``, ``huber`` (``rmse`` for
  reporting).

Every cross-entropy takes logits by default (``from_logits=True``), which is
both what jdl models return and the numerically stable choice.

Example:

  >>> import jax.numpy as jnp
  >>> import jdl.losses
  >>> loss_fn = jdl.losses.get("sparse_categorical_crossentropy", label_smoothing=0.1)
  >>> batch = {"label": jnp.array([0, 2]), "mask": jnp.array([1.0, 0.0])}
  >>> per_example = loss_fn(jnp.zeros((2, 3)), batch)
  >>> per_example.shape
  (2,)
  >>> round(float(jdl.losses.masked_mean(per_example, batch["mask"])), 4)  # log(3)
  1.0986
"""

from __future__ import annotations

from jdl.losses._helpers import (  # noqa: F401
    LossFn,
    Regularizer,
    masked_mean,
)
from jdl.losses.encoders import (  # noqa: F401
    multi_hot,
    one_hot,
)
from jdl.losses.classification import (  # noqa: F401
    binary_crossentropy,
    categorical_crossentropy,
    hinge,
    multiclass_hinge,
    multilabel_binary_crossentropy,
    sparse_categorical_crossentropy,
)
from jdl.losses.regression import (  # noqa: F401
    huber,
    mae,
    mse,
    rmse,
)
from jdl.losses.registry import (  # noqa: F401
    LOSSES,
    get,
    list_losses,
    register,
)
from jdl.losses.combinators import (  # noqa: F401
    WeightedLoss,
    head_target,
    weighted,
    with_heads,
    with_regularizer,
)

"""Sequence classifiers on simple RNN, LSTM and GRU cells, uni- or bidirectional."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from jdl.models._registry import register
from jdl.nn.initializers import Initializer, get_initializer
from jdl.nn.layers import Dense

CELLS: dict[str, type[nn.RNNCellBase]] = {
    "rnn": nn.SimpleCell,
    "lstm": nn.OptimizedLSTMCell,
    "gru": nn.GRUCell,
}
_POOLS = ("last", "mean", "max")


def _input_width(params: object) -> int | None:
  """Input width of the first cell found in ``params`` (its input kernels are ``i*``)."""
  if not hasattr(params, "items"):
    return None
  for key, value in params.items():
    if key.startswith("i") and hasattr(value, "get") and value.get("kernel") is not None:
      return int(value["kernel"].shape[0])
    found = _input_width(value)
    if found is not None:
      return found
  return None


class RNNClassifier(nn.Module):
  """Stacked recurrent layers over a ``(batch, time, features)`` sequence → Dense.

  Each layer is ``flax.linen.RNN`` over a cell (``"rnn"``: ``SimpleCell``, tanh;
  ``"lstm"``: ``OptimizedLSTMCell``; ``"gru"``: ``GRUCell``), or with
  ``bidirectional`` a ``flax.linen.Bidirectional`` pair whose outputs are
  concatenated (2 × ``hidden`` features). The sequence of the last layer is
  reduced over time (``pool``) and fed to a Dense layer. Inputs of shape
  ``(batch, time)`` get a feature axis of size 1 (e.g. MNIST-1D's (B, 40)).
  Parameters: ``layer_0`` … (each with ``cell``, or ``forward_rnn`` /
  ``backward_rnn``), ``fc``.

  Attributes:
    num_classes: output width (logits).
    cell: ``"rnn"``, ``"lstm"`` or ``"gru"``.
    hidden: state size of every cell.
    num_layers: number of stacked recurrent layers.
    bidirectional: run every layer in both directions.
    pool: ``"last"`` (final state: the last step forward, and the first step of
      the backward direction), ``"mean"`` or ``"max"`` over time.
    dropout: dropout rate on the outputs of every recurrent layer.
    kernel_init: initializer of the input-to-hidden kernels and of ``fc``.
    recurrent_init: initializer of the hidden-to-hidden kernels.
  """

  num_classes: int
  cell: str = "lstm"
  hidden: int = 128
  num_layers: int = 1
  bidirectional: bool = False
  pool: str = "last"
  dropout: float = 0.0
  kernel_init: str | Initializer = "lecun_normal"
  recurrent_init: str | Initializer = "orthogonal"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.cell not in CELLS:
      raise ValueError(f"rnn: cell must be one of {sorted(CELLS)}, got {self.cell!r}")
    if self.pool not in _POOLS:
      raise ValueError(f"rnn: pool must be one of {list(_POOLS)}, got {self.pool!r}")
    if self.num_layers < 1:
      raise ValueError(f"rnn: num_layers must be >= 1, got {self.num_layers!r}")
    if x.ndim == 2:
      x = x[..., None]
    if x.ndim != 3:
      raise ValueError(
          "rnn: expected sequences of shape (batch, time, features) or (batch, time), got an "
          f"input of shape {tuple(x.shape)}")
    width = _input_width(self.variables.get("params", {}).get("layer_0"))
    if width is not None and x.shape[-1] != width:
      raise ValueError(
          f"rnn: expected an input of shape (batch, time, {width}) (the parameters were built "
          f"for {width} features), got shape {tuple(x.shape)}")
    kernel_init = get_initializer(self.kernel_init)
    recurrent_init = get_initializer(self.recurrent_init)

    def make_rnn(**kwargs: object) -> nn.RNN:
      # parent=None: the parent layer adopts the module under its field name
      # ('cell', 'forward_rnn', 'backward_rnn') instead of this model.
      cell = CELLS[self.cell](features=self.hidden, kernel_init=kernel_init,
                              recurrent_kernel_init=recurrent_init, parent=None)
      return nn.RNN(cell, **kwargs)

    y_BxTxF = jnp.asarray(x, jnp.float32)
    for i in range(self.num_layers):
      if self.bidirectional:
        layer = nn.Bidirectional(make_rnn(parent=None), make_rnn(parent=None), name=f"layer_{i}")
      else:
        layer = make_rnn(name=f"layer_{i}")
      y_BxTxF = layer(y_BxTxF)
      if self.dropout:
        y_BxTxF = nn.Dropout(self.dropout, deterministic=not train)(y_BxTxF)
    if self.pool == "mean":
      y_BxF = jnp.mean(y_BxTxF, axis=1)
    elif self.pool == "max":
      y_BxF = jnp.max(y_BxTxF, axis=1)
    elif self.bidirectional:
      y_BxF = jnp.concatenate([y_BxTxF[:, -1, :self.hidden], y_BxTxF[:, 0, self.hidden:]], axis=-1)
    else:
      y_BxF = y_BxTxF[:, -1]
    return Dense(self.num_classes, kernel_init=kernel_init, name="fc")(y_BxF).astype(jnp.float32)


_INPUT = (40,)
SimpleRNN = register("rnn", input_shape=_INPUT)(functools.partial(RNNClassifier, cell="rnn"))
LSTM = register("lstm", input_shape=_INPUT)(functools.partial(RNNClassifier, cell="lstm"))
GRU = register("gru", input_shape=_INPUT)(functools.partial(RNNClassifier, cell="gru"))
BiRNN = register("birnn", input_shape=_INPUT)(
    functools.partial(RNNClassifier, cell="rnn", bidirectional=True))
BiLSTM = register("bilstm", input_shape=_INPUT)(
    functools.partial(RNNClassifier, cell="lstm", bidirectional=True))
BiGRU = register("bigru", input_shape=_INPUT)(
    functools.partial(RNNClassifier, cell="gru", bidirectional=True))

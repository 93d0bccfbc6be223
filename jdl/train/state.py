"""The train state: everything a train step changes, as one pytree."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """A pytree holding the whole mutable state of a run.

  Attributes:
    step: int32 scalar, the number of optimizer updates applied so far.
    params: the model's ``'params'`` collection.
    opt_state: the optax optimizer state.
    model_state: the model's other collections that training updates, such as
      ``{'batch_stats': ...}``; ``{}`` for models without any.
    rng: a raw ``uint32[2]`` PRNG key; the step folds ``step`` into it, so the
      same seed gives the same dropout masks whether a run was resumed or not.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  model_state: dict[str, Any]
  rng: jax.Array


_COMPILED_INIT_ARRAYS = 40  # models with more parameter arrays than this are initialised compiled


def init_variables(model: nn.Module, sample_input: jax.Array, seed: int) -> tuple[Any, dict[str, Any]]:
  """Initialises ``model`` on a sample batch; returns ``(params, model_state)``."""
  params_key, dropout_key = jax.random.split(jax.random.PRNGKey(seed))
  rngs = {"params": params_key, "dropout": dropout_key}
  init = lambda rngs, x: model.init(rngs, x, train=False)  # noqa: E731
  # A deep network is initialised as one compiled program: op by op, a ResNet-18's first init takes
  # 9 s on a 2-core CPU (each operation compiled on its own) against 4 s, and the compiled program is
  # kept by the persistent compilation cache. A small one is quicker op by op (nothing to compile).
  if len(jax.tree.leaves(jax.eval_shape(init, rngs, sample_input))) > _COMPILED_INIT_ARRAYS:
    init = jax.jit(init)
  variables = init(rngs, sample_input)
  variables = dict(variables)
  params = variables.pop("params")
  variables.pop("activations", None)  # what jdl.nn.record_activation sowed: not state
  return params, variables


def create_train_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    sample_input: jax.Array,
    seed: int = 0,
) -> TrainState:
  """Initialises parameters, collections and optimizer state.

  Args:
    model: a linen module called as ``model.apply(variables, x, train=...)``.
    tx: the optimizer.
    sample_input: a batch (or one example with a leading batch axis) with the
      shape and dtype the model will see after preprocessing.
    seed: seeds parameter initialisation and the run's rng.

  Returns:
    A ``TrainState`` at step 0.
  """
  return state_from_variables(tx, *init_variables(model, sample_input, seed), seed=seed)


def state_from_variables(tx: optax.GradientTransformation, params: Any, model_state: dict[str, Any],
                         seed: int = 0) -> TrainState:
  """A ``TrainState`` at step 0 around given variables (``init_variables``'s), the optimizer initialised on them."""
  return distinct_buffers(TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      model_state=model_state,
      rng=jax.random.fold_in(jax.random.PRNGKey(seed), 1),
  ))


def distinct_buffers(tree: Any) -> Any:
  """``tree`` with every array that appears twice (an optimizer whose ``init`` returns one zeros array for two
  slots, or keeps the parameters themselves) copied, so that the compiled step can donate the whole state."""
  seen: set[int] = set()

  def fresh(x: Any) -> Any:
    if isinstance(x, jax.Array):
      if id(x) in seen:
        return jnp.copy(x)
      seen.add(id(x))
    return x

  return jax.tree.map(fresh, tree)

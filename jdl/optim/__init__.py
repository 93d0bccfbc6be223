"""Optimizers and learning-rate schedules by name, as optax ``GradientTransformation`` chains.

Three layers, each usable on its own:

* ``create(name, *, learning_rate, **hyperparams)``: one optimizer from the
  registry (``list_optimizers()``), an ``optax.chain`` of ``scale_by_*``
  transforms ending in ``scale_by_learning_rate``. ``learning_rate`` is a float
  or an ``optax.Schedule``.
* ``schedule(name, *, learning_rate, total_steps=None, **kwargs)``: a
  learning-rate schedule from the registry (``list_schedules()``), a function
  of the optimizer's update count.
* ``from_config(cfg, *, total_steps=None)``: the whole pipeline the train
  engine uses, in this order::

    MultiSteps(                       # accumulate_steps > 1
      partition(frozen → zero,        # freeze patterns given
                trainable → chain(clip_by_global_norm, base optimizer(schedule))))

Users add optimizers with the ``register(name)`` decorator and schedules with
``register_schedule(name)``. Every optimizer carries a default hyperparameter
search space, as plain data (``search_space(name)``).

Schedule-free optimizers train one sequence of parameters and evaluate another:
call ``eval_params(opt_state, params)`` before evaluating; it returns ``params``
unchanged for every other optimizer, so a train loop can always call it.

Parameter paths are the ``'/'``-joined keys of the parameter tree the optimizer
sees (``{"Dense_0": {"kernel": ...}}`` → ``"Dense_0/kernel"``); patterns are
shell globs (``fnmatch``), and a pattern also matches everything below it
(``"Dense_0"`` matches ``"Dense_0/kernel"``).
"""

from __future__ import annotations

from jdl.optim._checks import (  # noqa: F401
    Factory,
    ScheduleFactory,
    SearchSpace,
)
from jdl.optim.paths import (  # noqa: F401
    check_patterns,
    freeze,
    matches,
    param_paths,
    path_mask,
)
from jdl.optim.nonfinite import (  # noqa: F401
    SkipNonfiniteState,
    skip_nonfinite,
    skipped_steps,
)
from jdl.optim.spaces import (  # noqa: F401
    check_search_space,
    choice,
    log_uniform,
    one_minus_log_uniform,
    uniform,
)
from jdl.optim.registry import (  # noqa: F401
    OPTIMIZERS,
    OptimizerSpec,
    create,
    get_spec,
    list_optimizers,
    register,
    search_space,
)
from jdl.optim.optimizers import (  # noqa: F401
    EvalParamsFn,
    adafactor,
    adagrad,
    adam,
    adamw,
    eval_params,
    lamb,
    lion,
    momentum,
    muon,
    nadam,
    nadamw,
    nesterov,
    radam,
    register_eval_params,
    rmsprop,
    schedule_free_adamw,
    schedule_free_sgd,
    sgd,
)
from jdl.optim.schedules import (  # noqa: F401
    SCHEDULES,
    list_schedules,
    register_schedule,
    schedule,
)
from jdl.optim.config import (  # noqa: F401
    CONFIG_KEYS,
    GROUP_KEYS,
    from_config,
    learning_rate_fn,
    param_groups,
)

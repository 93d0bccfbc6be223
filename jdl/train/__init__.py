"""Training: state, pure steps, strategies, precision, the fit loop, callbacks and experiment runs."""

from jdl.train.callbacks import Callback, EarlyStopping, Run
from jdl.train.loop import Evaluator, FitResult, fit
from jdl.train.parallel import Strategy
from jdl.train.parallel import create as create_strategy
from jdl.train.precision import DynamicLossScale, Policy, get_policy
from jdl.train.runs import TrainedRun, load_run
from jdl.train.state import TrainState, create_train_state
from jdl.train.step import (EvalStep, LossScaledTrainState, StepConfig, TrainStep, eval_step, make_eval_step,
                            make_train_step, train_step, with_loss_scale)

__all__ = [
    "Callback",
    "DynamicLossScale",
    "EarlyStopping",
    "EvalStep",
    "Evaluator",
    "FitResult",
    "LossScaledTrainState",
    "Policy",
    "Run",
    "StepConfig",
    "Strategy",
    "TrainState",
    "TrainStep",
    "TrainedRun",
    "create_strategy",
    "create_train_state",
    "eval_step",
    "fit",
    "get_policy",
    "load_run",
    "make_eval_step",
    "make_train_step",
    "train_step",
    "with_loss_scale",
]

"""Training: state, pure steps, the fit loop, callbacks and experiment runs."""

from jdl.train.callbacks import Callback, EarlyStopping, Run
from jdl.train.loop import Evaluator, FitResult, fit
from jdl.train.state import TrainState, create_train_state
from jdl.train.step import eval_step, make_eval_step, make_train_step, train_step

__all__ = [
    "Callback",
    "EarlyStopping",
    "Evaluator",
    "FitResult",
    "Run",
    "TrainState",
    "create_train_state",
    "eval_step",
    "fit",
    "make_eval_step",
    "make_train_step",
    "train_step",
]

"""The packages jdl.metrics, jdl.optim and jdl.losses: every public name of the single modules they were split from
is importable from the same place, and each file is one section a newcomer reads in a sitting."""

import importlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

# The public names the modules jdl/metrics.py, jdl/optim.py and jdl/losses.py had before they became packages.
NAMES = {
    "metrics": (
        'AUROC', 'AVERAGES', 'Accuracy', 'AveragePrecision', 'ConfusionMatrix', 'F1', 'METRICS',
        'MeanAbsoluteError', 'MeanSquaredError', 'Metric', 'MetricSpec', 'MetricWarning', 'Precision',
        'PrecisionAtK', 'PrecisionRecallF1', 'R2Score', 'Recall', 'RecallAtK', 'RootMeanSquaredError',
        'TopKAccuracy', 'accuracy', 'average_precision', 'classification_report', 'collection', 'compute_all',
        'confusion_matrix', 'get', 'list_metrics', 'mean_absolute_error', 'mean_squared_error',
        'merge_across', 'merge_stacked', 'parse_spec', 'parse_specs', 'plot_confusion_matrix',
        'precision_recall_curve', 'precision_recall_f1', 'r2_score', 'register', 'roc_auc', 'roc_curve',
        'root_mean_squared_error', 'top_k_accuracy', 'update_all',
    ),
    "optim": (
        'CONFIG_KEYS', 'EvalParamsFn', 'Factory', 'GROUP_KEYS', 'OPTIMIZERS', 'OptimizerSpec', 'SCHEDULES',
        'ScheduleFactory', 'SearchSpace', 'SkipNonfiniteState', 'adafactor', 'adagrad', 'adam', 'adamw',
        'check_search_space', 'choice', 'create', 'eval_params', 'freeze', 'from_config', 'get_spec', 'lamb',
        'learning_rate_fn', 'lion', 'list_optimizers', 'list_schedules', 'log_uniform', 'momentum', 'muon',
        'nadam', 'nadamw', 'nesterov', 'one_minus_log_uniform', 'param_groups', 'param_paths', 'path_mask',
        'radam', 'register', 'register_eval_params', 'register_schedule', 'rmsprop', 'schedule',
        'schedule_free_adamw', 'schedule_free_sgd', 'search_space', 'sgd', 'skip_nonfinite', 'skipped_steps',
        'uniform',
    ),
    "losses": (
        'LOSSES', 'LossFn', 'Regularizer', 'WeightedLoss', 'binary_crossentropy', 'categorical_crossentropy',
        'get', 'head_target', 'hinge', 'huber', 'list_losses', 'mae', 'masked_mean', 'mse', 'multi_hot',
        'multiclass_hinge', 'multilabel_binary_crossentropy', 'one_hot', 'register', 'rmse',
        'sparse_categorical_crossentropy', 'weighted', 'with_heads', 'with_regularizer',
    ),
}


@pytest.mark.parametrize("package", sorted(NAMES))
def test_no_public_name_was_lost(package):
  module = importlib.import_module(f"jdl.{package}")
  missing = [name for name in NAMES[package] if not hasattr(module, name)]
  assert not missing, f"jdl.{package} lost {missing}"
  for name in NAMES[package]:  # importable with `from jdl.X import name`, as before
    exec(f"from jdl.{package} import {name}", {})  # pylint: disable=exec-used


@pytest.mark.parametrize("package", sorted(NAMES))
def test_each_file_is_one_section_of_at_most_about_500_lines(package):
  files = sorted((ROOT / "jdl" / package).glob("*.py"))
  assert len(files) >= 5
  for path in files:
    assert len(path.read_text().splitlines()) <= 530, path

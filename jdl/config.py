"""Experiment configs: ``ml_collections.ConfigDict`` files and ``--config.KEY=VALUE`` overrides.

An experiment is a Python file with ``get_config() -> ConfigDict``, usually
starting from ``jdl.config.base_config()`` and overriding what differs. The
file is imported before training, so models, losses or optimizers registered in
it are available to the run.
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

import ml_collections

# Where `jdl train NAME` looks for NAME.py, after ./experiments.
_PACKAGE_EXPERIMENTS = pathlib.Path(__file__).resolve().parent.parent / "experiments"
# Sub-dicts whose keys are free-form (a model's or optimizer's own options): replaced whole, not merged.
OPEN_KEYS = ("model.options", "optimizer.hparams", "optimizer.schedule", "optimizer.groups", "loss_options", "losses",
              "loss_weights")


def base_config() -> ml_collections.ConfigDict:
  """Every field ``jdl train`` reads, with its default."""
  c = ml_collections.ConfigDict()
  c.name = ""  # the experiment's name; defaults to its file's name
  c.seed = 0
  # Your own files (paths relative to the experiment file) or modules, imported before the run so that the
  # models, datasets, losses, metrics, optimizers and callbacks they register can be named here.
  c.imports = ()
  # Callbacks by registered name, with options: ("my_callback", "snapshot:every=2"); see docs/extending.md.
  c.callbacks = ()

  c.data = ml_collections.ConfigDict()
  c.data.name = "fashion_mnist"
  # A validation split held out of train (its last 10%, the same examples every run): the eval_*
  # curves, the best checkpoint and early stopping are chosen on it, never on the test split.
  c.data.train_split = "train[:90%]"
  c.data.eval_split = "train[90%:]"  # evaluated after every epoch (eval_*); '' for none
  c.data.test_split = "test"  # evaluated once at the end (test_*)
  c.data.batch_size = 128
  c.data.eval_batch_size = 1000
  c.data.on_device = "auto"  # 'auto' | 'true' | 'false'
  c.data.transform = ""  # a jdl.data.transforms name applied to every split after loading; '' = none
  # Some classes only (ids or names, renumbered 0..k-1 in this order) in every split; () = all.
  c.data.classes = ()
  # Training examples kept per class, drawn with the seed (few-label training); 0 = all.
  c.data.train_per_class = 0

  c.model = ml_collections.ConfigDict()
  c.model.name = "mlp"
  c.model.options = ml_collections.ConfigDict()

  c.loss = "sparse_categorical_crossentropy"
  c.loss_options = ml_collections.ConfigDict()
  # Models returning a dict of outputs: {output: loss name}; non-empty, it replaces `loss`
  # (jdl.losses.weighted) and loss_options holds one group of options per output.
  c.losses = ml_collections.ConfigDict()
  c.loss_weights = ml_collections.ConfigDict()  # {output: weight}; outputs left out weigh 1
  # Metrics streamed over the eval and test sets, logged as eval_<key> / test_<key>:
  # "[output/]name[:option,...]", e.g. ("accuracy", "f1:macro", "auroc"); see docs/losses_metrics.md.
  c.metrics = ()

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "rmsprop"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.hparams = ml_collections.ConfigDict()
  c.optimizer.schedule = ml_collections.ConfigDict()  # empty: constant learning rate
  c.optimizer.clip_global_norm = ml_collections.config_dict.placeholder(float)  # None: no clipping
  c.optimizer.accumulate_steps = 1
  c.optimizer.freeze = ()  # parameter path globs that stay fixed (their BatchNorm layers in inference mode)
  # Parameter groups with their own learning rate, e.g. {"backbone": {"params": ("layer*",),
  # "learning_rate_scale": 0.1, "start_epoch": 3}}: the group trains at 0.1x the rate from epoch 3 on.
  c.optimizer.groups = ml_collections.ConfigDict()

  # Transfer learning (docs/transfer.md): start from a jdl run directory or a PyTorch/Keras
  # weights file of the same model; parameters matching init_from_skip's globs (a new head)
  # keep their fresh initialisation.
  c.init_from = ""
  c.init_from_skip = ()
  # With everything but the head frozen: the backbone's features computed once per split,
  # the head trained on them.
  c.cache_features = False

  c.epochs = 5
  # A non-finite training loss: 'raise' (an error naming the step), 'skip' (non-finite
  # updates are skipped inside the step, at most nonfinite_max_skips in a row) or 'stop'
  # (training ends; the last checkpoint is the last finite state).
  c.nonfinite = "raise"
  c.nonfinite_max_skips = 10
  c.progress = "auto"  # 'auto' | 'true' | 'false'
  c.chunks_per_epoch = 10  # progress updates per epoch

  c.early_stopping = ml_collections.ConfigDict()
  c.early_stopping.enabled = False
  c.early_stopping.monitor = "eval_loss"
  c.early_stopping.mode = "auto"
  c.early_stopping.patience = 3
  c.early_stopping.min_delta = 0.0
  c.early_stopping.restore_best = True

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.enabled = True
  c.checkpoint.keep = 3
  c.checkpoint.monitor = "eval_accuracy"  # '' keeps only the last `keep`
  c.checkpoint.mode = "auto"
  # Least seconds between two saves (0: every epoch); the last epoch is always saved.
  c.checkpoint.every_seconds = 30.0

  # Adversarial training (docs/attacks.md): '' (off) | 'fgsm' | 'pgd'. Each training
  # batch's first `fraction` of inputs become adversarial examples against the
  # current parameters, made inside the compiled step.
  c.adversarial = ml_collections.ConfigDict()
  c.adversarial.method = ""
  c.adversarial.eps = 0.1
  c.adversarial.steps = 7  # PGD steps
  c.adversarial.step_size = 0.0  # 0: 2.5 * eps / steps
  c.adversarial.norm = "linf"  # 'linf' | 'l2'
  c.adversarial.fraction = 0.5  # of each batch, in (0, 1]
  # Robust accuracy logged per epoch (eval_robust_accuracy): PGD at `eps` with this
  # many steps on the first `eval_examples` of the eval split (0: off).
  c.adversarial.eval_examples = 1000
  c.adversarial.eval_steps = 10

  # A penalty added to the data loss (docs/losses_metrics.md#regularization-from-the-config):
  # 'l2:1e-4', 'l1:1e-5,l2:1e-4', 'linf:1e-3', 'elastic_net:1e-5:1e-4'; '' for none. It
  # covers the parameters whose '/'-joined paths match none of regularizer_exclude's globs
  # (default: biases and normalisation scales), and is logged as train_objective beside train_loss.
  c.regularizer = ""
  # Data augmentation inside the compiled train step (jdl.data.augment), in order:
  # 'crop:2,flip,rotate:10,cutout:8', 'mixup:0.2' or 'cutmix:1.0'; '' for none. Never at evaluation.
  c.augment = ""
  c.regularizer_exclude = ("bias", "*/bias", "scale", "*/scale")

  # Training diagnostics (docs/visualize.md): per-layer gradient norms, update/weight
  # ratios, activation statistics and dead-unit fractions on the first `examples`
  # training examples, logged every `every` epochs as diag_* keys of metrics.jsonl.
  c.diagnostics = ml_collections.ConfigDict()
  c.diagnostics.enabled = False
  c.diagnostics.examples = 256
  c.diagnostics.every = 1

  # An ensemble trained in one program (docs/ensembles.md): `members` copies of the model
  # with their own initialisations and dropout, vmapped in one compiled step; evaluated as
  # the mean of their probabilities, with each member's accuracy, the majority vote and their
  # disagreement logged. learning_rates: () for the optimizer's, or one per member.
  c.ensemble = ml_collections.ConfigDict()
  c.ensemble.members = 1
  c.ensemble.learning_rates = ()

  # Quantization-aware training (docs/quantization.md): every Dense and Conv runs with
  # int8 fake quantization (straight-through gradients); `jdl quantize` converts the run.
  c.quantization = ml_collections.ConfigDict()
  c.quantization.enabled = False

  # 'auto' (single on one device, data_parallel on more) | 'single' | 'data_parallel'
  # | 'pmap' | 'model_parallel'; see docs/parallel.md.
  c.strategy = "auto"
  # Cut each training batch into this many independent micro-batches inside
  # the step: XLA's CPU runtime runs them on different cores at once
  # (BatchNorm then normalises per micro-batch); see docs/training.md.
  c.micro_batches = 1
  c.model_parallel = ml_collections.ConfigDict()
  c.model_parallel.axis_size = 2  # devices each large kernel is split over
  c.model_parallel.min_kernel_size = 16384  # kernels with more elements are split

  # 'float32' | 'mixed_bfloat16' | 'mixed_float16'; see docs/precision.md.
  c.precision = "float32"
  c.loss_scale = ml_collections.ConfigDict()  # mixed_float16 only
  c.loss_scale.initial = 2.0**15
  c.loss_scale.growth_interval = 2000

  # Multi-process runs (jax.distributed); empty: the JDL_* environment, then SLURM.
  c.distributed = ml_collections.ConfigDict()
  c.distributed.coordinator = ""  # host:port of process 0
  c.distributed.num_processes = 0
  c.distributed.process_id = -1
  c.distributed.local_device_ids = ""  # e.g. '0,1'; empty: all local devices
  c.distributed.initialization_timeout = 300  # seconds to wait for the other processes

  c.plot = True
  # TensorBoard event files in RUN_DIR/tensorboard (docs/training.md#tensorboard): each epoch's
  # scalars, the test metrics, the hyperparameters and the curves figure. False: none.
  c.tensorboard = True
  # JAX's persistent compilation cache: a later run of the same programs loads them instead of
  # compiling ($JDL_CACHE_DIR, else ~/.cache/jdl/xla). False: compile every time.
  c.compilation_cache = True
  return c


def experiments_dirs() -> list[pathlib.Path]:
  """Where experiment names are looked up, in order."""
  dirs = [pathlib.Path.cwd() / "experiments"]
  dirs += [pathlib.Path(p) for p in os.environ.get("JDL_EXPERIMENTS", "").split(os.pathsep) if p]
  dirs.append(_PACKAGE_EXPERIMENTS)
  return dirs


def list_experiments() -> list[str]:
  names = set()
  for d in experiments_dirs():
    if d.is_dir():
      names.update(p.stem for p in d.glob("*.py") if not p.name.startswith("_"))
  return sorted(names)


def find_experiment(experiment: str) -> pathlib.Path:
  """Resolves an experiment name or a path to its config file."""
  path = pathlib.Path(experiment)
  if path.suffix == ".py" or os.sep in experiment:
    if not path.is_file():
      raise FileNotFoundError(f"experiment: no config file at {path}")
    return path.resolve()
  for d in experiments_dirs():
    candidate = d / f"{experiment}.py"
    if candidate.is_file():
      return candidate.resolve()
  raise ValueError(f"experiment: unknown experiment {experiment!r}; known experiments: "
                   f"{', '.join(list_experiments())} (or give the path of a config file)")


# Experiment name -> the file its config came from (jdl train keeps a copy in the run: RUN_DIR/experiment.py).
_SOURCES: dict[str, Any] = {}


def experiment_source(name: str) -> Any:
  """The file ``load_experiment`` read the experiment ``name`` from, or None."""
  return _SOURCES.get(name)


IMPORTS_ENV = "JDL_IMPORTS"  # os.pathsep-separated files or modules every jdl process imports first


class UserImportError(ImportError):
  """A user's file or module named by ``--import`` or ``config.imports`` failed to import.

  Its message carries the user's own traceback (jdl's frames left out).
  """


def import_user(spec: str, base: str | os.PathLike[str] | None = None) -> Any:
  """Imports a user's file (``my_parts.py``) or module (``mypkg.parts``), running its registrations.

  A file is imported once per process (by its resolved path): naming it again
  is a no-op. A relative path is taken from ``base`` (the experiment file's
  directory) when it exists there, else from the working directory. The
  file's directory goes on ``sys.path``, so it may import its neighbours.

  Raises:
    FileNotFoundError: no such file.
    UserImportError: the file or module raised; the message shows its traceback.
  """
  import traceback  # pylint: disable=g-import-not-at-top

  if not isinstance(spec, str) or not spec:
    raise TypeError(f"import: expected a file path or a module name, got {spec!r}")
  is_file = spec.endswith(".py") or os.sep in spec
  if is_file:
    path = pathlib.Path(os.path.expanduser(spec))
    if not path.is_absolute() and base is not None and (pathlib.Path(base) / path).is_file():
      path = pathlib.Path(base) / path
    path = path.resolve()
    if not path.is_file():
      raise FileNotFoundError(f"import: no such file {spec!r}" + (f" (looked in {base} and here)" if base else ""))
    name = "jdl_user_" + "".join(c if c.isalnum() else "_" for c in str(path.with_suffix("")))
    if name in sys.modules:
      return sys.modules[name]
  try:
    if not is_file:
      return importlib.import_module(spec)
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    if str(path.parent) not in sys.path:
      sys.path.append(str(path.parent))
    module_spec.loader.exec_module(module)
    return module
  except Exception as e:  # the user's code: show their traceback, not ours
    if is_file:
      sys.modules.pop(name, None)
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "importlib" not in f.filename
              and not f.filename.startswith(str(pathlib.Path(__file__).resolve().parent) + os.sep)]
    shown = "".join(traceback.format_list(frames)) + "".join(traceback.format_exception_only(type(e), e))
    raise UserImportError(f"import {spec!r} failed:\n{shown.rstrip()}") from None


def import_all(specs: Sequence[str], base: str | os.PathLike[str] | None = None) -> list[str]:
  """``import_user`` for each of ``specs``; returns them resolved (absolute file paths, module names)."""
  resolved = []
  for spec in specs:
    module = import_user(spec, base)
    resolved.append(getattr(module, "__file__", None) if spec.endswith(".py") or os.sep in spec else spec)
  return [str(r) for r in resolved]


def env_imports() -> list[str]:
  """The files and modules ``--import`` named (``$JDL_IMPORTS``), imported by every jdl process."""
  return [p for p in os.environ.get(IMPORTS_ENV, "").split(os.pathsep) if p]


def load_experiment(experiment: str) -> ml_collections.ConfigDict:
  """Imports the experiment's file (running its registrations) and calls ``get_config()``.

  The files of ``--import`` (``$JDL_IMPORTS``) are imported first, the
  experiment's own ``config.imports`` (relative to the experiment file) after
  ``get_config()``; ``config.imports`` then holds all of them, resolved, so a
  run re-imports them wherever it is reopened.
  """
  first = import_all(env_imports())
  path = find_experiment(experiment)
  module_name = f"jdl_experiment_{path.stem}"
  spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[module_name] = module
  try:
    spec.loader.exec_module(module)
  except SyntaxError as e:
    raise ValueError(f"experiment: {path} is not valid Python: {e.msg} (line {e.lineno})") from None
  if not callable(getattr(module, "get_config", None)):
    raise ValueError(f"experiment: {path} defines no get_config() function; an experiment file defines "
                     "get_config() returning an ml_collections.ConfigDict (start from jdl.config.base_config())")
  config = module.get_config()
  if not isinstance(config, ml_collections.ConfigDict):
    raise TypeError(f"experiment: {path}'s get_config() must return an ml_collections.ConfigDict, "
                    f"got {type(config).__name__}")
  if not config.get("name"):
    with config.unlocked():
      config.name = path.stem
  own = import_all(tuple(config.get("imports", ()) or ()), path.parent)
  with config.unlocked():
    config.imports = tuple(dict.fromkeys([*first, *own]))
  _SOURCES[config.name] = path
  return config


def _did_you_mean(name: str, node: Any) -> str:
  close = difflib.get_close_matches(name, [str(k) for k in node.keys()], n=1, cutoff=0.7)
  return f" (did you mean {close[0]!r}?)" if close else ""


_BOOL_WORDS = {"true": True, "false": False, "yes": True, "no": False, "on": True, "off": False}


def _parse_value(text: str) -> Any:
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text  # a bare string such as adam or fashion_mnist


def apply_override(config: ml_collections.ConfigDict, key: str, text: str) -> None:
  """Sets ``config.<key>`` from the string ``text`` (``--config.<key>=<text>``).

  The value is read as a Python literal (``1e-3``, ``(256, 128)``, ``True``) or
  else as a string, then checked against the field's type. Unknown keys are an
  error naming the known ones, except inside free-form option dicts.
  """
  parts = key.split(".")
  node = config
  for depth, part in enumerate(parts[:-1]):
    if part not in node:
      raise ValueError(f"--config.{key}: no field {'.'.join(parts[:depth + 1])!r}{_did_you_mean(part, node)}; "
                       f"known fields here: {', '.join(sorted(node.keys()))}")
    node = node[part]
    if not isinstance(node, ml_collections.ConfigDict):
      raise ValueError(f"--config.{key}: {'.'.join(parts[:depth + 1])!r} is a value, not a group")
  leaf = parts[-1]
  value = _parse_value(text)
  parent = ".".join(parts[:-1])
  if leaf not in node:
    if parent not in OPEN_KEYS:
      raise ValueError(f"--config.{key}: no field {key!r}{_did_you_mean(leaf, node)}; known fields"
                       f"{' of ' + parent if parent else ''}: {', '.join(sorted(node.keys()))}")
    with node.unlocked():
      node[leaf] = value
    return
  current = node[leaf]
  if isinstance(current, bool) and isinstance(value, str) and value.lower() in _BOOL_WORDS:
    value = _BOOL_WORDS[value.lower()]
  if isinstance(current, bool) and not isinstance(value, bool):
    raise TypeError(f"--config.{key}: expected True or False (or true, false, yes, no, on, off), got {text!r}")
  if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if isinstance(current, tuple) and isinstance(value, list):
    value = tuple(value)
  if isinstance(current, tuple) and isinstance(value, str):
    value = (value,)  # --config.metrics=auroc
  if isinstance(current, ml_collections.ConfigDict):
    if key in OPEN_KEYS and isinstance(value, dict):  # a free-form group replaced whole: --config.model.options={}
      with node.unlocked():
        node[leaf] = ml_collections.ConfigDict(value)
      return
    whole = f", or replace it whole with a dict (--config.{key}={{}} empties it)" if key in OPEN_KEYS else ""
    raise TypeError(f"--config.{key}: is a group of fields ({', '.join(sorted(current.keys())) or 'none'}); "
                    f"set its fields one by one{whole}")
  if current is None and isinstance(value, int) and not isinstance(value, bool):
    try:  # a typed placeholder such as clip_global_norm: float
      node[leaf] = value
      return
    except TypeError:
      value = float(value)
  try:
    node[leaf] = value
  except TypeError as e:
    raise TypeError(f"--config.{key}: expected a value of type {type(current).__name__}, "
                    f"got {text!r} ({type(value).__name__})") from e


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[tuple[str, str]]) -> ml_collections.ConfigDict:
  for key, text in overrides:
    apply_override(config, key, text)
  return config


def _int_at_least(config: ml_collections.ConfigDict, key: str, low: int) -> None:
  value = _get(config, key)
  if value is _MISSING:
    return
  if isinstance(value, bool) or not isinstance(value, int) or value < low:
    raise ValueError(f"{key}: expected an integer >= {low}, got {value!r}")


def _number_at_least(config: ml_collections.ConfigDict, key: str, low: float) -> None:
  value = _get(config, key)
  if value is _MISSING:
    return
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value >= low and value < float("inf")):
    raise ValueError(f"{key}: expected a number >= {low:g}, got {value!r}")


def _one_of(config: ml_collections.ConfigDict, key: str, allowed: Sequence[str]) -> None:
  value = _get(config, key)
  if value is not _MISSING and value not in allowed:
    raise ValueError(f"{key}: expected one of {', '.join(map(str, allowed))}, got {value!r}")


_MISSING = object()


def _get(config: ml_collections.ConfigDict, key: str) -> Any:
  """``config.<key>``, or ``_MISSING`` for a config built without that field (its default applies)."""
  node: Any = config
  for part in key.split("."):
    if not isinstance(node, (ml_collections.ConfigDict, dict)) or part not in node:
      return _MISSING
    node = node[part]
  return node


def _check_known_fields(config: Any, base: Any, prefix: str = "") -> None:
  """A field ``jdl train`` does not know is a typo (an experiment file's too), except in free-form groups."""
  for key in config.keys():
    name = f"{prefix}{key}"
    if key not in base:
      raise ValueError(f"config: no field {name!r}{_did_you_mean(str(key), base)} (set in the experiment file); "
                       f"known fields{' of ' + prefix[:-1] if prefix else ''}: {', '.join(sorted(base.keys()))}")
    value = config[key]
    if isinstance(value, ml_collections.ConfigDict) and name not in OPEN_KEYS and isinstance(
        base[key], ml_collections.ConfigDict):
      _check_known_fields(value, base[key], f"{name}.")


def check(config: ml_collections.ConfigDict) -> None:
  """Checks every field ``jdl train`` reads, before anything is loaded, written or compiled.

  Ranges and types of the numbers, the words of the option fields, and the
  names (dataset, model, optimizer, schedule, loss, metrics, strategy,
  precision), each against the registry that knows them (the message lists the
  known ones). Checks that need the data (labels against the output width,
  batch sizes against the split sizes) come when it is loaded, still before
  compiling.

  Raises:
    ValueError, TypeError: naming the field, what was expected and what was given.
  """
  imports = config.get("imports", ()) or ()
  if isinstance(imports, str):
    imports = (imports,)
  import_all(tuple(imports))  # what --config.imports added (the rest is imported already: a no-op)
  _check_known_fields(config, base_config())
  for key, low in (("epochs", 1), ("data.batch_size", 1), ("data.eval_batch_size", 1), ("chunks_per_epoch", 1),
                   ("checkpoint.keep", 1), ("early_stopping.patience", 0), ("nonfinite_max_skips", 1), ("optimizer.accumulate_steps", 1)):
    _int_at_least(config, key, low)
  seed = config.get("seed", 0)
  if isinstance(seed, bool) or not isinstance(seed, int):
    raise ValueError(f"seed: expected an integer, got {seed!r}")
  for key in ("checkpoint.every_seconds", "early_stopping.min_delta", "optimizer.learning_rate"):
    _number_at_least(config, key, 0.0)
  for key in ("progress", "data.on_device"):
    value = _get(config, key)
    if value is not _MISSING and not (isinstance(value, bool) or str(value).lower() in ("auto", "none", "true", "false", "1", "0", "yes", "no")):
      raise ValueError(f"{key}: expected 'auto', true or false, got {value!r}")
  for key in ("checkpoint.mode", "early_stopping.mode"):
    _one_of(config, key, ("auto", "min", "max"))
  _one_of(config, "nonfinite", ("raise", "skip", "stop"))
  method = _get(config, "adversarial.method")
  if method is not _MISSING and method not in ("", "fgsm", "pgd"):
    raise ValueError(f"adversarial.method: expected '' (off), 'fgsm' or 'pgd', got {method!r}")
  _one_of(config, "adversarial.norm", ("linf", "l2"))
  _int_at_least(config, "adversarial.steps", 1)
  _int_at_least(config, "adversarial.eval_steps", 1)
  _int_at_least(config, "adversarial.eval_examples", 0)
  spec = _get(config, "regularizer")
  if spec is not _MISSING:
    from jdl import regularizers  # pylint: disable=g-import-not-at-top

    regularizers.parse_spec(spec)
  spec = _get(config, "augment")
  if spec is not _MISSING:
    from jdl.data import augment  # pylint: disable=g-import-not-at-top

    augment.parse(spec)
  _int_at_least(config, "data.train_per_class", 0)
  from jdl.train import transfer  # pylint: disable=g-import-not-at-top

  transfer.check_init_from(config)
  cache = _get(config, "cache_features")
  if cache is not _MISSING and not isinstance(cache, bool):
    raise TypeError(f"cache_features: expected true or false, got {cache!r}")
  _int_at_least(config, "diagnostics.examples", 1)
  _int_at_least(config, "diagnostics.every", 1)
  for key in ("adversarial.eps", "adversarial.step_size"):
    _number_at_least(config, key, 0.0)
  fraction = _get(config, "adversarial.fraction")
  if fraction is not _MISSING and (isinstance(fraction, bool) or not isinstance(fraction, (int, float))
                                   or not 0.0 < float(fraction) <= 1.0):
    raise ValueError(f"adversarial.fraction: expected a number in (0, 1], got {fraction!r}")
  split = config.data.get("train_split")
  if not isinstance(split, str) or not split:
    raise ValueError(f"data.train_split: expected a split such as 'train' or 'train[:90%]', got {split!r}")

  from jdl import data, losses, metrics, models, optim  # pylint: disable=g-import-not-at-top
  from jdl.train import parallel, precision, step  # pylint: disable=g-import-not-at-top

  step.check_micro_batches(config.get("micro_batches", 1), config.data.batch_size)

  data.info(config.data.name, caller="data.name")
  models.MODELS.entry(config.model.name, "model.name")
  optim.OPTIMIZERS.entry(config.optimizer.name, "optimizer.name")
  schedule = config.optimizer.get("schedule")
  if schedule:
    optim.SCHEDULES.entry(schedule.get("name"), "optimizer.schedule.name")
  heads = config.get("losses")
  for where, name in ([("loss", config.loss)] if not heads else [(f"losses.{h}", n) for h, n in heads.items()]):
    losses.LOSSES.entry(name, where)
  metrics.parse_specs(tuple(config.get("metrics", ()) or ()))
  from jdl.train import callbacks  # pylint: disable=g-import-not-at-top

  named = config.get("callbacks", ()) or ()
  for text in (named,) if isinstance(named, str) else named:
    callbacks.parse_spec(text)
  if config.get("strategy", "auto") not in parallel.names():
    raise ValueError(f"strategy: expected one of {', '.join(parallel.names())}, got {config.strategy!r}")
  precision.get_policy(config.get("precision", "float32"))


def to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """A JSON-friendly copy (tuples become lists)."""
  return config.to_dict()

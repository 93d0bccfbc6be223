"""The ``jdl`` command.

    jdl train EXPERIMENT [--workdir DIR] [--resume | --overwrite] [--config.KEY=VALUE ...]
    jdl summary MODEL [--input-shape 28,28,1] [--num-classes 10] [--option KEY=VALUE ...]
    jdl data prepare NAME
    jdl list {experiments,models,datasets}
    jdl bench run --suite NAME --out DIR [...] | jdl bench report DIR
    jdl attack RUN_DIR --eps 0.05,0.1 [--method pgd|fgsm] [--steps 10] [--norm linf|l2]
    jdl visualize RUN_DIR --what ideal,saliency,filters,confusion,errors [--class NAME]
    jdl visualize RUN_DIR [RUN_DIR ...] --what diagnostics
    jdl eval RUN_DIR [--split test] [--metrics accuracy,f1:macro]
    jdl predict RUN_DIR FILE [FILE ...] [--json]
    jdl compare RUN_DIR RUN_DIR ... [--metric eval_accuracy] [--out DIR]
    jdl tune EXPERIMENT --space SPACE --trials N [--workdir DIR] [--resume | --overwrite] [--jobs J] [...]
    jdl ensemble RUN_DIR RUN_DIR ... [--split test]
    jdl quantize RUN_DIR [--method ptq-static|ptq-dynamic] [--calibration-batches 8] [--keep-float LAYER,...]
    jdl export RUN_DIR [--int8]

Every command takes ``--import FILE_OR_MODULE`` (repeatable): your own file,
imported first, whose registrations (models, datasets, losses, metrics,
optimizers, schedules, callbacks, strategies, workloads) the command can then
name. Only argparse is imported up front; each command imports what it needs, so the
command starts fast.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from collections.abc import Sequence
from typing import Any


def _split_config_overrides(extra: Sequence[str]) -> list[tuple[str, str]]:
  """``--config.a.b=1`` or ``--config.a.b 1`` → ``[('a.b', '1')]``."""
  overrides, i = [], 0
  while i < len(extra):
    arg = extra[i]
    if not arg.startswith("--config."):
      raise SystemExit(f"jdl train: unrecognised argument {arg!r}; overrides look like --config.KEY=VALUE")
    body = arg[len("--config."):]
    if "=" in body:
      key, value = body.split("=", 1)
      i += 1
    else:
      if i + 1 >= len(extra):
        raise SystemExit(f"jdl train: {arg} needs a value")
      key, value = body, extra[i + 1]
      i += 2
    overrides.append((key, value))
  return overrides


def _cmd_train(args: argparse.Namespace, extra: Sequence[str]) -> int:
  from jdl import config as config_lib  # pylint: disable=g-import-not-at-top

  overrides = _split_config_overrides(extra)
  config = config_lib.load_experiment(args.experiment)  # also runs the file's registrations
  from jdl.train import experiment  # pylint: disable=g-import-not-at-top
  from jdl.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  if args.resume and not args.workdir:
    raise ValueError("--resume needs --workdir (the run directory to continue)")
  if args.resume and (pathlib.Path(args.workdir) / workdir_lib.CONFIG).is_file():
    # A resumed run continues as it was started; the command line only adds its overrides.
    config = workdir_lib.config_from_disk(args.workdir, config)
  config_lib.apply_overrides(config, overrides)
  workdir = args.workdir or experiment.default_workdir(config)
  from jdl.train import loop, preemption  # pylint: disable=g-import-not-at-top

  try:
    summary = experiment.train_and_evaluate(config, workdir, resume=args.resume, overwrite=args.overwrite)
  except loop.Interrupted as e:
    saved = "the checkpoint is saved" if config.checkpoint.enabled else "no checkpoint was kept (checkpoint.enabled=False)"
    print(f"jdl train: {e}; {saved}. Continue with: jdl train {args.experiment} --workdir {workdir} --resume",
          file=sys.stderr)
    return preemption.EXIT_STATUS.get(e.reason, 1)
  # The test loss and accuracy first, then every metric the config names (test_<key>).
  first = [k for k in ("test_accuracy", "test_loss") if k in summary]
  named = sorted(k for k, v in summary.items() if k.startswith("test_") and k not in first and k != "test_seconds"
                 and isinstance(v, (int, float)) and not isinstance(v, bool))
  shown = {k: summary[k] for k in first + named}
  parts = [f"{k}={v:.4f}" for k, v in shown.items()]
  parts.append(f"examples/s={summary['examples_per_second']:,.0f}")
  parts.append(f"train={summary['train_seconds']:.1f}s compile={summary['compile_seconds']:.1f}s")
  print(" ".join(parts))
  print(f"results: {summary['workdir']} (summary.json, metrics.jsonl, curves.png, checkpoints/)")
  return 0


def _cmd_summary(args: argparse.Namespace, extra: Sequence[str]) -> int:
  if extra:
    raise SystemExit(f"jdl summary: unrecognised arguments {' '.join(extra)}")
  from jdl.models import summary_main  # pylint: disable=g-import-not-at-top

  return summary_main(args.argv)


def _cmd_data(args: argparse.Namespace, extra: Sequence[str]) -> int:
  if extra:
    raise SystemExit(f"jdl data: unrecognised arguments {' '.join(extra)}")
  from jdl import data  # pylint: disable=g-import-not-at-top

  for name in args.names:
    data.prepare(name)
    info = data.info(name)
    print(f"{name}: ready ({info})")
  return 0


def _registries() -> dict[str, Any]:
  """``jdl list``'s kinds → the registry (or a function listing names) that knows them."""
  import jdl.bench  # pylint: disable=g-import-not-at-top
  import jdl.losses  # pylint: disable=g-import-not-at-top
  import jdl.metrics  # pylint: disable=g-import-not-at-top
  import jdl.models  # pylint: disable=g-import-not-at-top
  import jdl.optim  # pylint: disable=g-import-not-at-top
  from jdl.bench import workloads  # pylint: disable=g-import-not-at-top
  from jdl.data import catalog  # pylint: disable=g-import-not-at-top
  from jdl.train import callbacks, parallel  # pylint: disable=g-import-not-at-top

  return {"models": jdl.models.MODELS, "datasets": catalog.CATALOG, "losses": jdl.losses.LOSSES,
          "metrics": jdl.metrics.METRICS, "optimizers": jdl.optim.OPTIMIZERS, "schedules": jdl.optim.SCHEDULES,
          "callbacks": callbacks.CALLBACKS, "strategies": parallel.STRATEGIES, "workloads": workloads.WORKLOADS}


LIST_KINDS = ("experiments", "models", "datasets", "losses", "metrics", "optimizers", "schedules", "callbacks",
              "strategies", "workloads")


LESSONS_DIR = pathlib.Path(__file__).resolve().parent.parent / "lessons"


def _lessons() -> list[pathlib.Path]:
  return sorted(LESSONS_DIR.glob("[0-9][0-9]_*.py"))


def _find_lesson(lessons: Sequence[pathlib.Path], wanted: str) -> pathlib.Path:
  """The one lesson whose number (``6``, ``06``) or a part of whose name (``tensors``) is ``wanted``."""
  found = [p for p in lessons if (wanted.isdigit() and int(p.name[:2]) == int(wanted)) or wanted in p.stem[3:]]
  if len(found) != 1:
    names = ", ".join(p.stem for p in lessons)
    raise ValueError(f"lesson: {'no' if not found else 'more than one'} lesson matches {wanted!r}; the lessons: "
                     f"{names}")
  return found[0]


def _cmd_lesson(args: argparse.Namespace, extra: Sequence[str]) -> int:
  if extra:
    raise ValueError(f"unrecognised arguments: {' '.join(extra)}")
  lessons = _lessons()
  if not lessons:
    raise FileNotFoundError(f"lesson: no lessons in {LESSONS_DIR} (they ship with the repository, beside jdl/)")
  if args.lesson is None:
    for path in lessons:
      first = path.read_text().split('"""')[1].strip().splitlines()[0]
      print(first)
    return 0
  found = _find_lesson(lessons, str(args.lesson))
  import importlib.util  # pylint: disable=g-import-not-at-top

  spec = importlib.util.spec_from_file_location(f"jdl_lesson_{found.stem}", found)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  for name, value in module.run(quick=args.quick, out=args.out).items():
    print(f"{name}: {value}")
  return 0


def _cmd_list(args: argparse.Namespace, extra: Sequence[str]) -> int:
  if extra:
    raise ValueError(f"unrecognised arguments: {' '.join(extra)}")
  if args.what == "experiments":
    from jdl import config as config_lib  # pylint: disable=g-import-not-at-top

    print("\n".join(config_lib.list_experiments()))
    return 0
  registry = _registries()[args.what]
  user = set(registry.user_names())
  # Names your own code registered (--import, config.imports, an experiment file) are marked.
  print("\n".join(f"{name}  (yours)" if name in user else name for name in registry.names()))
  return 0


def _cmd_bench(args: argparse.Namespace, extra: Sequence[str]) -> int:
  from jdl.bench import cli as bench_cli  # pylint: disable=g-import-not-at-top

  main_fn = {"run": bench_cli.run_main, "report": bench_cli.report_main,
             "set-targets": bench_cli.set_targets_main}[args.bench_command]
  return main_fn(list(extra))


def _floats(text: str) -> list[float]:
  try:
    return [float(v) for v in text.split(",") if v.strip()]
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _epoch_arg(epoch: str | None) -> int | str | None:
  if epoch not in (None, "best"):
    if not epoch.isdigit():
      raise ValueError(f"--epoch: expected an epoch number or 'best', got {epoch!r}")
    return int(epoch)
  return epoch


def _cmd_attack(args: argparse.Namespace, extra: Sequence[str]) -> int:
  if extra:
    raise ValueError(f"unrecognised arguments: {' '.join(extra)}")
  from jdl.train import runs  # pylint: disable=g-import-not-at-top

  epoch = _epoch_arg(args.epoch)
  out = runs.attack_run(args.run_dir, args.eps, method=args.method, steps=args.steps, step_size=args.step_size,
                        norm=args.norm, split=args.split, limit=args.limit, batch_size=args.batch_size,
                        epoch=epoch, seed=args.seed)
  steps = f", {out['steps']} steps" if out["method"] == "pgd" else ""
  print(f"{out['experiment']} (epoch {out['epoch']}), {out['split']} split, {out['examples']} examples, "
        f"{out['method']} {out['norm']}{steps}")
  print("| eps | accuracy |")
  print("|---:|---:|")
  print(f"| 0 (clean) | {out['clean_accuracy']:.4f} |")
  for e, acc in zip(out["eps"], out["accuracy"]):
    print(f"| {e:g} | {acc:.4f} |")
  print(f"written: {pathlib.Path(out['run']) / runs.ATTACK_FILE}, {pathlib.Path(out['run']) / runs.ATTACK_FIGURE}")
  return 0


def _cmd_visualize(args: argparse.Namespace, extra: Sequence[str]) -> int:
  if extra:
    raise ValueError(f"unrecognised arguments: {' '.join(extra)}")
  from jdl.train import runs  # pylint: disable=g-import-not-at-top

  epoch = _epoch_arg(args.epoch)
  out = runs.visualize_run(args.run_dir, args.what, class_name=args.class_name, count=args.count, steps=args.steps,
                           tv=args.tv, learning_rate=args.learning_rate, jitter=args.jitter, split=args.split,
                           epoch=epoch, seed=args.seed)
  if "ideal" in out:
    ideal = out["ideal"]
    print("| class | probability | with TV |")
    print("|---|---:|---:|")
    for name, p, q in zip(ideal["classes"], ideal["probability"], ideal["probability_tv"]):
      print(f"| {name} | {p:.4f} | {q:.4f} |")
    if "total_variation" in ideal:
      print(f"mean total variation: {ideal['total_variation'][0]:.4f} without TV, {ideal['total_variation'][1]:.4f} "
            f"with TV {ideal['tv']:g}")
  if "confusion" in out:
    print(f"{out['confusion']['split']} accuracy: {out['confusion']['accuracy']:.4f}")
  if "errors" in out:
    print(f"{out['errors']['errors']} misclassified examples in the {out['errors']['split']} split")
  print("written: " + ", ".join(out["written"]))
  return 0


def _cmd_quantize(args: argparse.Namespace, extra: Sequence[str]) -> int:
  if extra:
    raise ValueError(f"unrecognised arguments: {' '.join(extra)}")
  from jdl.train import deploy  # pylint: disable=g-import-not-at-top

  report = deploy.quantize_run(args.run_dir, method=args.method, calibration_batches=args.calibration_batches,
                               calibration=args.calibration, keep_float=(args.keep_float or "").split(","),
                               batch_size=args.batch_size, epoch=_epoch_arg(args.epoch),
                               measure_speed=not args.no_speed)
  print("\n".join(deploy.report_lines(report)))
  print(f"written: {pathlib.Path(report['run']) / deploy.QUANTIZED}, {pathlib.Path(report['run']) / deploy.QUANTIZE_FILE}")
  return 0


def _cmd_export(args: argparse.Namespace, extra: Sequence[str]) -> int:
  if extra:
    raise ValueError(f"unrecognised arguments: {' '.join(extra)}")
  from jdl.train import deploy  # pylint: disable=g-import-not-at-top

  out = deploy.export_run(args.run_dir, int8=args.int8, epoch=_epoch_arg(args.epoch))
  print(f"exported {'the int8' if args.int8 else 'the float32'} network of {out['experiment']} (epoch {out['epoch']}): "
        f"inputs {out['input_dtype']}{out['input_shape']}, outputs logits; platforms {', '.join(out['platforms'])}")
  print(f"written: {out['path']}")
  return 0


def _cmd_compare(args: argparse.Namespace, extra: Sequence[str]) -> int:
  if extra:
    raise ValueError(f"unrecognised arguments: {' '.join(extra)}")
  from jdl.train import compare  # pylint: disable=g-import-not-at-top

  out = compare.compare_runs(args.run_dir, metric=args.metric, out=args.out)
  print(out["table"], end="")
  print(f"written: {out['markdown']}, {out['figure']}")
  return 0


def _cmd_tune(args: argparse.Namespace, extra: Sequence[str]) -> int:
  overrides = _split_config_overrides(extra)
  from jdl import tune  # pylint: disable=g-import-not-at-top

  tune.tune(args.experiment, args.space, trials=args.trials, workdir=args.workdir, storage=args.storage,
            study_name=args.study, sampler=args.sampler, pruner=args.pruner, metric=args.metric, jobs=args.jobs,
            seed=args.seed, overrides=overrides, resume=args.resume, overwrite=args.overwrite)
  return 0


def _check_split(args: argparse.Namespace, extra: Sequence[str]) -> None:
  if extra:
    raise ValueError(f"unrecognised arguments: {' '.join(extra)}")
  if args.split not in ("train", "eval", "test"):
    raise ValueError(f"--split: expected train, eval or test, got {args.split!r}")


def _cmd_ensemble(args: argparse.Namespace, extra: Sequence[str]) -> int:
  _check_split(args, extra)
  from jdl import ensemble  # pylint: disable=g-import-not-at-top

  out = ensemble.combine_runs(args.run_dir, split=args.split)
  p = f"{args.split}_"
  print(f"{len(out['runs'])} runs on the {args.split} split")
  for run, accuracy in zip(out["runs"], out[f"{p}member_accuracy"]):
    print(f"  {run}: accuracy={accuracy:.4f}")
  print(f"ensemble (mean of probabilities): accuracy={out[p + 'accuracy']:.4f}; majority vote: "
        f"{out[p + 'vote_accuracy']:.4f}; best member: {out[p + 'best_member_accuracy']:.4f}; "
        f"disagreement: {out[p + 'disagreement']:.4f}")
  print("accuracy of the first k runs: " + ", ".join(f"k={k + 1}: {a:.4f}" for k, a in
                                                    enumerate(out["accuracy_by_size"])))
  return 0


def _cmd_eval(args: argparse.Namespace, extra: Sequence[str]) -> int:
  _check_split(args, extra)
  import jdl.metrics  # pylint: disable=g-import-not-at-top
  from jdl.train import runs  # pylint: disable=g-import-not-at-top

  metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
  if metrics is not None:
    runs.import_run_code(pathlib.Path(args.run_dir))  # the run's own metrics are known by name
    jdl.metrics.parse_specs(tuple(metrics))  # a misspelt metric fails before the run is loaded
  run = runs.load_run(args.run_dir, _epoch_arg(args.epoch))
  out = run.evaluate(args.split, metrics=metrics)
  print(f"{run.config.get('name')} (epoch {run.epoch}), {args.split} split")
  for key, value in out.items():
    print(f"{key}={value:.6f}" if isinstance(value, float) else f"{key}={value}")
  return 0


def _read_inputs(paths: Sequence[str], shape: tuple[int, ...], dtype: Any, resize: str = "crop"
                 ) -> tuple[Any, list[str]]:
  """Files to the dataset's input layout, and a name per example: ``.npy`` arrays (one example or a batch),
  or images (Pillow: converted to the channels, center-cropped to the run's aspect ratio and resized to its
  height and width, as image folders are prepared; ``resize="stretch"`` resizes only)."""
  import numpy as np  # pylint: disable=g-import-not-at-top

  batches, names = [], []
  for path in paths:
    p = pathlib.Path(path)
    if not p.is_file():
      raise FileNotFoundError(f"files: {p} is not a file")
    if p.suffix == ".npy":
      a = np.load(p, allow_pickle=False)
      a = a[None] if a.shape == shape else a
      if a.shape[1:] != shape:
        raise ValueError(f"files: {p} holds an array of shape {a.shape}; expected {shape} or (N, {shape})")
      batches.append(a.astype(dtype))
      names += [p.name] if len(a) == 1 else [f"{p.name}[{k}]" for k in range(len(a))]
      continue
    if len(shape) != 3 or shape[-1] not in (1, 3):
      raise ValueError(f"files: {p} is an image but the run's inputs have shape {shape}; give an .npy file")
    from jdl.data import folder  # pylint: disable=g-import-not-at-top

    a = folder.decode(p, folder.FolderOptions(image_size=(shape[0], shape[1]), channels=shape[-1], resize=resize))
    if a is None:
      raise ValueError(f"files: {p} is not an image Pillow can read")
    batches.append(a[None].astype(dtype))
    names.append(p.name)
  return np.concatenate(batches), names


def _cmd_predict(args: argparse.Namespace, extra: Sequence[str]) -> int:
  if extra:
    raise ValueError(f"unrecognised arguments: {' '.join(extra)}")
  import json  # pylint: disable=g-import-not-at-top

  from jdl.data import folder  # pylint: disable=g-import-not-at-top
  from jdl.train import runs  # pylint: disable=g-import-not-at-top

  for path in args.files:
    if not pathlib.Path(path).is_file():
      raise FileNotFoundError(f"files: {path} is not a file")
  run = runs.load_run(args.run_dir, _epoch_arg(args.epoch))
  stored = run.split("train")[run.input_key]
  name = str(run.config.data.name)
  resize = (folder.parse_name(name)[1].get("resize", "crop") if name.startswith(folder.FOLDER_PREFIX) else "crop")
  x, names = _read_inputs(args.files, tuple(stored.shape[1:]), stored.dtype, resize)
  out = run.predict(x)
  if "labels" in out:
    rows = [{"file": name, "class": out["classes"][i], "probability": float(out["probabilities"][i, out["labels"][i]])}
            for i, name in enumerate(names)]
  else:
    rows = [{"file": name, "outputs": [float(v) for v in out["outputs"][i]]} for i, name in enumerate(names)]
  if args.json:
    print(json.dumps(rows, indent=2))
  else:
    for row in rows:
      print("  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
  return 0


def _run_command(sub: Any, name: str, fn: Any, help_text: str, description: str) -> argparse.ArgumentParser:
  """A subcommand on one trained run: ``RUN_DIR`` and ``--epoch``."""
  command = sub.add_parser(name, help=help_text, description=description)
  command.add_argument("run_dir", help="the --workdir of a `jdl train` run")
  command.add_argument("--epoch", help="checkpoint: an epoch, 'best', or the state jdl train tested (default)")
  command.set_defaults(fn=fn)
  return command


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="jdl", description="jdl: train and inspect JAX models.")
  sub = parser.add_subparsers(dest="command", required=True)

  train = sub.add_parser("train", help="run an experiment",
                         description="Run an experiment: a name under experiments/ or a config file's path. "
                                     "Override any config field with --config.KEY=VALUE.")
  train.add_argument("experiment", help="experiment name (see `jdl list experiments`) or path to a .py config")
  train.add_argument("--workdir", help="run directory (default: runs/<experiment>/<timestamp>)")
  train.add_argument("--resume", action="store_true", help="continue the run in --workdir from its latest checkpoint")
  train.add_argument("--overwrite", action="store_true", help="delete --workdir first if it holds a run")
  train.set_defaults(fn=_cmd_train)

  lesson = sub.add_parser("lesson", help="run a lesson of the course (lessons/NN_*.py)",
                          description="Run a lesson of the course: its figures printed, its pictures saved.")
  lesson.add_argument("lesson", nargs="?", help="its number (3 or 03) or name (tensors); omitted: the list")
  lesson.add_argument("--quick", action="store_true", help="the reduced size the tests run")
  lesson.add_argument("--out", default="lessons/out", help="where its figures go (default lessons/out)")
  lesson.set_defaults(fn=_cmd_lesson)

  summary = sub.add_parser("summary", help="layers, shapes, parameter counts and sizes of a model",
                           add_help=False)
  summary.add_argument("argv", nargs=argparse.REMAINDER)
  summary.set_defaults(fn=_cmd_summary)

  data = sub.add_parser("data", help="prepare datasets")
  data_sub = data.add_subparsers(dest="data_command", required=True)
  prepare = data_sub.add_parser("prepare", help="prepare datasets once (reused afterwards)")
  prepare.add_argument("names", nargs="+")
  prepare.set_defaults(fn=_cmd_data)

  lister = sub.add_parser("list", help="list experiments, models, datasets, losses, metrics, optimizers, ...",
                          description="Lists the names a kind of component is known by; the ones your own code "
                                      "registered (--import FILE) are marked '(yours)'.")
  lister.add_argument("what", choices=LIST_KINDS)
  lister.set_defaults(fn=_cmd_list)

  attack = sub.add_parser("attack", help="robust accuracy of a trained run under FGSM or PGD attacks",
                          description="Adversarial examples against a trained run: accuracy on its test split "
                                      "for each eps; writes attack.json and attack.png into the run directory.")
  attack.add_argument("run_dir", help="the --workdir of a `jdl train` run")
  attack.add_argument("--eps", type=_floats, required=True, help="comma-separated perturbation sizes, e.g. 0.05,0.1")
  attack.add_argument("--method", default="pgd", help="pgd (default) or fgsm")
  attack.add_argument("--steps", type=int, default=10, help="PGD steps (default 10)")
  attack.add_argument("--step-size", type=float, help="PGD step size (default 2.5 * eps / steps)")
  attack.add_argument("--norm", default="linf", help="linf (default) or l2")
  attack.add_argument("--split", default="test", help="the run's split to attack (default test)")
  attack.add_argument("--limit", type=int, help="attack only the first N examples")
  attack.add_argument("--batch-size", type=int, default=500)
  attack.add_argument("--epoch", help="checkpoint: an epoch, 'best', or the latest (default)")
  attack.add_argument("--seed", type=int, default=0, help="PGD's random starts")
  attack.set_defaults(fn=_cmd_attack)

  visualize = sub.add_parser(
      "visualize", help="figures of a trained run: ideal class inputs, saliency, filters, errors, diagnostics",
      description="Figures of a trained run, written as PNGs into its directory (and visualize.json): "
                  "ideal (activation maximisation of each class), saliency (gradient, SmoothGrad, integrated "
                  "gradients), filters (the first convolution), confusion, errors (the most confidently "
                  "misclassified examples), diagnostics (training diagnostics; several runs side by side).")
  visualize.add_argument("run_dir", nargs="+", help="the --workdir of a `jdl train` run (several: diagnostics)")
  visualize.add_argument("--what", required=True,
                         help="comma-separated: ideal, saliency, filters, confusion, errors, diagnostics, or all")
  visualize.add_argument("--class", dest="class_name", help="a class name of the run's dataset (ideal, saliency)")
  visualize.add_argument("--count", type=int, default=8, help="examples in the saliency and errors figures")
  visualize.add_argument("--steps", type=int, default=512, help="activation maximisation steps (default 512)")
  visualize.add_argument("--tv", type=float, default=1.0,
                         help="total-variation weight of the second row of ideal (default 1)")
  visualize.add_argument("--learning-rate", type=float, default=0.01,
                         help="activation maximisation's Adam rate (default 0.01)")
  visualize.add_argument("--jitter", type=int, default=2,
                         help="random shift in pixels at each ascent step (default 2)")
  visualize.add_argument("--split", default="test", help="the split of saliency, confusion and errors")
  visualize.add_argument("--epoch", help="checkpoint: an epoch, 'best', or the state jdl train tested (default)")
  visualize.add_argument("--seed", type=int, default=0)
  visualize.set_defaults(fn=_cmd_visualize)

  evaluate = _run_command(sub, "eval", _cmd_eval, "evaluate a trained run on a split, with any metrics",
                          "Evaluates a `jdl train` run's checkpoint on one of its splits with the evaluation jdl "
                          "train ran: its test figures reproduce summary.json.")
  evaluate.add_argument("--split", default="test", help="train, eval or test (default test)")
  evaluate.add_argument("--metrics", help="comma-separated jdl.metrics specs, e.g. accuracy,f1:macro,auroc "
                                          "(default: the run's own)")
  predict = _run_command(sub, "predict", _cmd_predict, "a trained run's predictions for image or .npy files",
                         "Predicts with a `jdl train` run: images (resized and converted to the run's input) or "
                         ".npy arrays as the dataset stores them.")
  predict.add_argument("files", nargs="+", help="image files (PNG, JPEG, ...) or .npy arrays")
  predict.add_argument("--json", action="store_true", help="print JSON")

  compare = sub.add_parser("compare", help="runs side by side: final metrics, differing settings, curves overlaid",
                           description="Compares `jdl train` runs: a table of their best and final metrics and the "
                                       "settings that differ (compare.md, printed) and their train and eval curves "
                                       "overlaid (compare.png).")
  compare.add_argument("run_dir", nargs="+", help="the --workdir of `jdl train` runs")
  compare.add_argument("--metric", default="eval_accuracy", help="the logged key to rank by (default eval_accuracy)")
  compare.add_argument("--out", default=".", help="directory for compare.md and compare.png (default: here)")
  compare.set_defaults(fn=_cmd_compare)

  ens = sub.add_parser("ensemble", help="separately trained runs combined: the mean of their probabilities",
                       description="Combines `jdl train` runs of one dataset into an ensemble: its accuracy (mean of "
                                   "the runs' probabilities), the majority vote's, each run's, their disagreement, and "
                                   "the accuracy of the first k runs for each k.")
  ens.add_argument("run_dir", nargs="+", help="the --workdir of two or more `jdl train` runs")
  ens.add_argument("--split", default="test", help="train, eval or test (default test)")
  ens.set_defaults(fn=_cmd_ensemble)

  tune = sub.add_parser(
      "tune", help="hyperparameter search on Optuna (TPE, random, grid, QMC; pruning; a study database)",
      description="Searches an experiment's hyperparameters with Optuna: each trial is a `jdl train` run "
                  "(WORKDIR/trials/NNNN) with the values the search space chose, scored by a per-epoch validation "
                  "metric and pruned early when unpromising. The study is kept in a database (SQLite in WORKDIR by "
                  "default), so a killed search resumes with --resume and several processes can share it. Writes "
                  "trials.md, history.png, importances.png, intermediate.png and best_experiment.py in WORKDIR. "
                  "Override config fields of every trial with --config.KEY=VALUE.")
  tune.add_argument("experiment", help="experiment name (see `jdl list experiments`) or path to a .py config")
  tune.add_argument("--space", required=True,
                    help="a shipped space (learning_rate, optimizer, regularization, augmentation, mlp) or "
                         "FILE.py[:FUNCTION] defining FUNCTION(trial, config) -> config")
  tune.add_argument("--trials", type=int, required=True, help="trials in the study, in all (a resumed study runs the "
                                                              "ones it lacks)")
  tune.add_argument("--workdir", help="the study's directory (default: runs/tune/<experiment>)")
  tune.add_argument("--resume", action="store_true", help="continue the study in --workdir (or --storage)")
  tune.add_argument("--overwrite", action="store_true", help="delete the study and its trials first")
  tune.add_argument("--storage", help="an SQLAlchemy URL for the study (default: sqlite:///WORKDIR/study.db)")
  tune.add_argument("--study", help="the study's name in the database (default: the experiment's name)")
  tune.add_argument("--sampler", default="tpe", help="tpe (default), random, grid (the space's grid) or qmc")
  tune.add_argument("--pruner", default="median",
                    help="median[:STARTUP[:WARMUP]] (default median: 5 trials before pruning), halving, hyperband, "
                         "or none")
  tune.add_argument("--metric", default="eval_accuracy",
                    help="the objective: a per-epoch validation figure, eval_accuracy (default), eval_loss or "
                         "eval_<metric>; maximised or minimised as its name says")
  tune.add_argument("--jobs", type=int, default=1, help="worker processes on this machine (default 1)")
  tune.add_argument("--seed", type=int, default=0, help="the sampler's seed (default 0)")
  tune.set_defaults(fn=_cmd_tune)

  quantize = sub.add_parser(
      "quantize", help="int8 quantization of a trained run, measured for size, accuracy and speed",
      description="Post-training int8 quantization of a trained run (weights per output channel, activations per "
                  "tensor, BatchNorm folded): saves RUN_DIR/quantized and reports bytes, test accuracy and loss, "
                  "each layer's SQNR and inference speed of float32 and int8 (quantize.json).")
  quantize.add_argument("run_dir", help="the --workdir of a `jdl train` run")
  quantize.add_argument("--method", default="ptq-static", help="ptq-static (default) or ptq-dynamic")
  quantize.add_argument("--calibration-batches", type=int, default=8, help="training batches for static scales")
  quantize.add_argument("--calibration", default="minmax", help="minmax (default) or percentile (99.99th)")
  quantize.add_argument("--batch-size", type=int, default=256, help="calibration batch size")
  quantize.add_argument("--keep-float", help="comma-separated layer paths to leave in float32")
  quantize.add_argument("--epoch", help="checkpoint: an epoch, 'best', or the state jdl train tested (default)")
  quantize.add_argument("--no-speed", action="store_true", help="skip the inference speed measurement")
  quantize.set_defaults(fn=_cmd_quantize)

  export = sub.add_parser("export", help="a trained run's network as a serialized StableHLO artefact (jax.export)",
                          description="Serialises the run's float32 network (or with --int8 the one `jdl quantize` "
                                      "made) to RUN_DIR/export/: callable from any process with "
                                      "jax.export.deserialize, without jdl or the experiment file.")
  export.add_argument("run_dir", help="the --workdir of a `jdl train` run")
  export.add_argument("--int8", action="store_true", help="export the quantized network (run `jdl quantize` first)")
  export.add_argument("--epoch", help="checkpoint (float32 only): an epoch, 'best', or the state jdl train tested")
  export.set_defaults(fn=_cmd_export)

  bench = sub.add_parser("bench", help="optimizer benchmark suites: run them, report on them")
  bench_sub = bench.add_subparsers(dest="bench_command", required=True)
  for name, text in (("run", "run or resume a suite (jdl bench run --help)"),
                     ("report", "write report.md and report.html for a results directory"),
                     ("set-targets", "record a suite's validation targets from tuned baselines rerun over many "
                      "seeds")):
    bench_cmd = bench_sub.add_parser(name, help=text, add_help=False)  # jdl.bench.cli parses the arguments
    bench_cmd.set_defaults(fn=_cmd_bench)
  for command in sub.choices.values():  # main() takes it off the line first; here for --help
    if command is not bench:
      command.add_argument("--import", dest="imports", action="append", metavar="FILE_OR_MODULE", default=[],
                           help=IMPORT_HELP)
  parser.add_argument("--import", dest="imports", action="append", metavar="FILE_OR_MODULE", default=[],
                      help=IMPORT_HELP)
  return parser


IMPORT_HELP = ("your own file (my_parts.py) or module to import first, so that the models, datasets, losses, "
               "metrics, optimizers and callbacks it registers are known by name (repeatable; anywhere on the line)")


def _take_imports(argv: list[str]) -> tuple[list[str], list[str]]:
  """``--import X`` / ``--import=X`` anywhere on the line → (the specs, the other arguments)."""
  specs, rest, i = [], [], 0
  while i < len(argv):
    arg = argv[i]
    if arg == "--import":
      if i + 1 >= len(argv):
        raise SystemExit("jdl: --import needs a file (my_parts.py) or a module name")
      specs.append(argv[i + 1])
      i += 2
      continue
    if arg.startswith("--import="):
      specs.append(arg.split("=", 1)[1])
    else:
      rest.append(arg)
    i += 1
  return specs, rest


def _import_user_code(specs: Sequence[str]) -> None:
  """Imports ``--import``'s files now and passes them on ($JDL_IMPORTS) to experiments and worker processes."""
  from jdl import config as config_lib  # pylint: disable=g-import-not-at-top

  resolved = config_lib.import_all(specs)
  os.environ[config_lib.IMPORTS_ENV] = os.pathsep.join(dict.fromkeys([*config_lib.env_imports(), *resolved]))


def _parse(parse: Any, argv: Sequence[str], what: str) -> Any:
  """``parse(argv)`` with argparse's exit turned into a ``ValueError`` carrying its message (None for --help)."""
  import contextlib  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top

  err = io.StringIO()
  try:
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
      return parse(list(argv))
  except SystemExit as e:
    if e.code in (0, None):
      return None
    lines = err.getvalue().strip().splitlines() or [str(e.code)]
    raise ValueError(f"{what}: {lines[-1]}") from None


def _is_path(text: str) -> bool:
  return text.endswith(".py") or os.sep in text


def check_command(argv: Sequence[str], *, missing_paths_ok: bool = False) -> list[str]:
  """Checks a ``jdl`` command line as far as it can be checked without running it.

  The arguments are parsed by the parser that runs the command, so an unknown
  command or flag, or a flag's bad value, fails. Beyond parsing: ``train`` and
  ``tune`` load the experiment, apply the ``--config.KEY=VALUE`` overrides and
  check the config as ``jdl train`` does before it trains (an unknown
  experiment, config field or name fails), and ``tune`` loads its space and
  checks its options as ``jdl tune`` does before it opens the study;
  ``summary`` needs a model or an experiment, ``lesson`` a lesson, ``data
  prepare`` datasets the catalog knows, ``bench run`` a suite and the workloads
  and optimizers it names; the commands on trained runs check their option
  words (split, epoch, metrics, method, norm, what). Files of ``--import`` are
  imported, so what they register is known (use ``jdl.registry.scoped_all`` to
  undo it). Nothing is trained, written or compiled.

  Args:
    argv: the arguments after ``jdl``.
    missing_paths_ok: a path the command names that does not exist (a run
      directory or a file an earlier command writes, the reader's own weights
      file or image folder) is not an error: what depends on it is left
      unchecked.

  Returns:
    The missing paths that were let through (only with ``missing_paths_ok``;
    for a path the config names, such as ``init_from``, the error's message),
    so that a caller can judge them.

  Raises:
    ValueError: the command would fail (the message says why); ``TypeError``,
      ``KeyError``, ``ImportError`` and ``FileNotFoundError`` as the checks raise them.
  """
  argv = list(argv)
  imports, rest = _take_imports(argv)
  missing: list[str] = []

  def absent(path: str, is_dir: bool | None = None) -> bool:
    """Whether ``path`` is missing (then recorded, or an error without ``missing_paths_ok``)."""
    p = pathlib.Path(path).expanduser()
    if p.exists() if is_dir is None else (p.is_dir() if is_dir else p.is_file()):
      return False
    if not missing_paths_ok:
      kind = "file or directory" if is_dir is None else ("directory" if is_dir else "file")
      raise FileNotFoundError(f"jdl: {path}: no such {kind}")
    missing.append(path)
    return True

  if argv[:1] == ["bench"]:  # as main() does: jdl bench reads its own --import
    imports, rest = [], argv
  resolve = True
  for spec in imports:
    if _is_path(spec) and absent(spec, is_dir=False):
      resolve = False  # what it registers is unknown: parse only
    else:
      from jdl import config as config_lib  # pylint: disable=g-import-not-at-top

      config_lib.import_user(spec)
  if rest[:1] == ["summary"]:
    from jdl.models import summarize  # pylint: disable=g-import-not-at-top

    args = _parse(summarize._parser().parse_args, rest[1:], "jdl summary")  # pylint: disable=protected-access
    if args is None or args.list or not resolve:
      return missing
    if args.model is None:
      raise ValueError("jdl summary: MODEL is required (see --list)")
    if args.model not in summarize.list_models() and not (_is_path(args.model) and absent(args.model, False)):
      _check_experiment(args.model, [], missing, check=False)
    return missing
  parsed = _parse(build_parser().parse_known_args, rest, "jdl")
  if parsed is None:
    return missing
  args, extra = parsed
  if args.command == "bench":
    from jdl.bench import cli as bench_cli  # pylint: disable=g-import-not-at-top

    _check_bench(bench_cli, [args.bench_command, *extra], absent)
    return missing
  if args.command in ("train", "tune"):
    try:
      overrides = _split_config_overrides(extra)
    except SystemExit as e:
      raise ValueError(str(e)) from None
  elif extra:
    raise ValueError(f"jdl {args.command}: unrecognised arguments: {' '.join(extra)}")
  for path in (lambda v: v if isinstance(v, list) else [v])(getattr(args, "run_dir", None) or []):
    absent(path, is_dir=True)
  for path in getattr(args, "files", None) or []:
    absent(path, is_dir=False)
  if getattr(args, "epoch", None) is not None:
    _epoch_arg(args.epoch)
  if not resolve:
    return missing
  if args.command == "train":
    if args.resume and not args.workdir:
      raise ValueError("--resume needs --workdir (the run directory to continue)")
    if not (_is_path(args.experiment) and absent(args.experiment, is_dir=False)):
      _check_experiment(args.experiment, overrides, missing if missing_paths_ok else None)
  elif args.command == "tune":
    if _is_path(args.experiment) and absent(args.experiment, is_dir=False):
      return missing
    from jdl import tune  # pylint: disable=g-import-not-at-top

    try:
      tune.check_arguments(args.experiment, args.space, trials=args.trials, sampler=args.sampler, pruner=args.pruner,
                           metric=args.metric, jobs=args.jobs, overrides=overrides, resume=args.resume,
                           overwrite=args.overwrite)
    except FileNotFoundError as e:
      if not missing_paths_ok:
        raise
      missing.append(str(e))
  elif args.command == "lesson" and args.lesson is not None:
    _find_lesson(_lessons(), str(args.lesson))
  elif args.command == "data":
    from jdl import data  # pylint: disable=g-import-not-at-top

    for name in args.names:
      try:
        data.info(name)
      except FileNotFoundError as e:
        if not missing_paths_ok:
          raise
        missing.append(str(e))
  elif args.command in ("eval", "ensemble"):
    _check_split(args, [])
    if getattr(args, "metrics", None):
      import jdl.metrics  # pylint: disable=g-import-not-at-top

      jdl.metrics.parse_specs(tuple(m.strip() for m in args.metrics.split(",") if m.strip()))
  elif args.command == "attack":
    from jdl import attacks  # pylint: disable=g-import-not-at-top

    for flag, value, allowed in (("--method", args.method, attacks.METHODS), ("--norm", args.norm, attacks.NORMS)):
      if value not in allowed:
        raise ValueError(f"jdl attack: {flag}: expected one of {', '.join(allowed)}, got {value!r}")
  elif args.command == "visualize":
    from jdl.train import runs  # pylint: disable=g-import-not-at-top

    what = [w.strip() for w in args.what.split(",") if w.strip()]
    unknown = [w for w in what if w not in (*runs.VISUALS, "all")]
    if not what or unknown:
      raise ValueError(f"jdl visualize: --what: expected one or more of {', '.join(runs.VISUALS)} (or all), "
                       f"got {args.what!r}")
  elif args.command == "quantize":
    from jdl.train import deploy  # pylint: disable=g-import-not-at-top

    if args.method not in deploy.RUN_METHODS:
      raise ValueError(f"jdl quantize: --method: expected one of {', '.join(deploy.RUN_METHODS)}, got {args.method!r}")
  return missing


def _check_experiment(experiment: str, overrides: Sequence[tuple[str, str]], missing: list[str] | None,
                      check: bool = True) -> None:
  """Loads the experiment and applies the overrides as ``jdl train`` does, then checks the config as it does.

  A file the config names that does not exist (an ``init_from`` file, an image folder) is an error, or its
  message is added to ``missing`` when that is a list.
  """
  from jdl import config as config_lib  # pylint: disable=g-import-not-at-top

  config = config_lib.load_experiment(experiment)
  config_lib.apply_overrides(config, overrides)
  if check:
    try:
      config_lib.check(config)
    except FileNotFoundError as e:
      if missing is None:
        raise
      missing.append(str(e))


def _check_bench(bench_cli: Any, argv: Sequence[str], absent: Any) -> None:
  """``jdl bench COMMAND``: parsed by the command's own parser (``jdl.bench.cli.<command>_parser``); the suite,
  workloads and optimizers it names must be known, the directory ``report`` reads must exist."""
  parser = getattr(bench_cli, f"{argv[0].replace('-', '_')}_parser")()
  args = _parse(parser.parse_args, argv[1:], f"jdl bench {argv[0]}")
  if args is None:
    return
  from jdl.bench import cluster, search, workloads  # pylint: disable=g-import-not-at-top
  from jdl.bench import suite as suite_lib  # pylint: disable=g-import-not-at-top

  for path in getattr(args, "imports", None) or []:
    if absent(path, is_dir=False):
      return  # what it registers is unknown: parse only
    cluster.load_user_file(path)
  if argv[0] == "report":
    absent(args.dir, is_dir=True)
    return
  if getattr(args, "list", False):
    return
  if argv[0] == "run":
    if not args.suite or not args.out:
      raise ValueError("jdl bench run needs --suite NAME and --out DIR (or --list)")
    suite = bench_cli._suite_from_args(args)  # pylint: disable=protected-access
  else:
    suite = suite_lib.get_suite(args.suite)
  for name in getattr(args, "workloads", None) or suite.workloads:
    workloads.get_workload(name)
  named = [*(getattr(args, "optimizers", None) or suite.optimizers), *(getattr(args, "baselines", None) or ())]
  unknown = sorted(set(named) - set(search.list_optimizers()))
  if unknown:
    raise ValueError(f"jdl bench {argv[0]}: unknown optimizer(s) {', '.join(unknown)}; known: "
                     f"{', '.join(search.list_optimizers())}")


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  imports, rest = _take_imports(argv)
  if argv[:1] != ["bench"]:  # jdl bench reads its own --import (and hands it to its cluster jobs)
    argv = rest
  try:
    if imports:
      _import_user_code(imports)
  except (ImportError, OSError, TypeError) as e:
    if os.environ.get("JDL_DEBUG"):
      raise
    print(f"jdl: error: {e}", file=sys.stderr)
    return 2
  if argv[:1] == ["summary"]:  # its own parser takes every argument, --help and --list first included
    from jdl.models import summary_main  # pylint: disable=g-import-not-at-top

    try:
      return summary_main(argv[1:])
    except (ValueError, TypeError, KeyError, OSError, ImportError) as e:
      if os.environ.get("JDL_DEBUG"):
        raise
      print(f"jdl summary: error: {e}", file=sys.stderr)
      return 2
  parser = build_parser()
  args, extra = parser.parse_known_args(argv)
  try:
    return args.fn(args, extra)
  except KeyboardInterrupt:
    if os.environ.get("JDL_DEBUG"):
      raise
    print(f"jdl {args.command}: interrupted (Ctrl-C); what was saved is complete: resume with --resume",
          file=sys.stderr)
    return 130
  except (ValueError, TypeError, KeyError, OSError, ImportError) as e:
    if os.environ.get("JDL_DEBUG"):
      raise
    print(f"jdl {args.command}: error: {e}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())

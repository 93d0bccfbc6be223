"""Model summaries: layers, output shapes, parameter counts and sizes, without running the model.

Everything is computed with ``jax.eval_shape`` (no parameters are allocated, no
FLOPs spent), so ``summary("vgg16", (224, 224, 3))`` is cheap.
"""

from __future__ import annotations

import argparse
import ast
import math
import sys
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jdl.models._registry import MODELS, create, default_input_shape, list_models

def _build(model_or_name: nn.Module | str, num_classes: int, options: dict[str, Any],
           caller: str) -> tuple[nn.Module, str]:
  if isinstance(model_or_name, str):
    return create(model_or_name, num_classes=num_classes, **options), model_or_name
  if isinstance(model_or_name, nn.Module):
    if options:
      raise TypeError(f"{caller}: options {sorted(options)} apply to model names only; "
                      f"got a module {type(model_or_name).__name__}")
    return model_or_name, type(model_or_name).__name__
  raise TypeError(f"{caller}: expected a model name or a flax.linen.Module, got {model_or_name!r}")


def _input_shape(model_or_name: nn.Module | str, input_shape: Sequence[int] | None,
                 caller: str) -> tuple[int, ...]:
  if input_shape is None:
    shape = default_input_shape(model_or_name) if isinstance(model_or_name, str) else None
    if shape is None:
      raise ValueError(f"{caller}: input_shape is required for {model_or_name!r} (it has no "
                       "registered default), e.g. input_shape=(28, 28, 1)")
    return shape
  shape = tuple(input_shape)
  if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
    raise ValueError(f"{caller}: input_shape must be a non-empty sequence of positive ints "
                     f"(one example, without the batch axis), got {input_shape!r}")
  return shape


def _variables_shape(model: nn.Module, x: jax.ShapeDtypeStruct, train: bool) -> Any:
  def init(x):
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    variables = dict(model.init(rngs, x, train=train))
    variables.pop("activations", None)  # recorded outputs (jdl.nn.record_activation), not variables
    return variables

  return jax.eval_shape(init, x)


def _sizes(tree: Any) -> dict[tuple[str, ...], int]:
  if not tree:
    return {}
  flat = traverse_util.flatten_dict(nn.unbox(tree))
  return {k: math.prod(v.shape) for k, v in flat.items()}


def count_params(model_or_name: nn.Module | str, input_shape: Sequence[int] | None = None, *,
                 num_classes: int = 10, **options: Any) -> int:
  """Number of parameters (the ``'params'`` collection), computed with ``jax.eval_shape``.

  Args:
    model_or_name: a registered name or a linen Module.
    input_shape: one example's shape, without the batch axis (default: the
      shape the model was registered with).
    num_classes: logits width (names only).
    **options: model options (names only).
  """
  model, _ = _build(model_or_name, num_classes, options, "count_params")
  shape = _input_shape(model_or_name, input_shape, "count_params")
  variables = _variables_shape(model, jax.ShapeDtypeStruct((1, *shape), jnp.float32), False)
  return sum(_sizes(variables.get("params", {})).values())


def _format_tree(tree: Any) -> str:
  if hasattr(tree, "shape") and hasattr(tree, "dtype"):
    return f"{jnp.dtype(tree.dtype).name}[{','.join(str(d) for d in tree.shape)}]"
  if isinstance(tree, (tuple, list)):
    return "(" + ", ".join(_format_tree(t) for t in tree) + ")"
  if isinstance(tree, dict):
    return "{" + ", ".join(f"{k}: {_format_tree(v)}" for k, v in tree.items()) + "}"
  return repr(tree)


def _bytes(n: int) -> str:
  size, unit = float(n), "B"
  for bigger in ("KiB", "MiB", "GiB"):
    if size < 1024:
      break
    size, unit = size / 1024, bigger
  return f"{n:,} B" if unit == "B" else f"{n:,} B ({size:,.2f} {unit})"


def summary(model_or_name: nn.Module | str, input_shape: Sequence[int] | None = None, *,
            num_classes: int = 10, batch_size: int = 1, depth: int | None = None,
            train: bool = False, **options: Any) -> str:
  """A text table of a model's layers, output shapes and parameter counts.

  One row per module call (in execution order, first call only): its path in the
  variables (``layer1_0/conv1``), its class, its output shape(s), and the
  parameters and BatchNorm statistics of its subtree. Then the totals and the
  parameters' size in bytes as float32, bfloat16/float16 and int8. BatchNorm
  running statistics (``'batch_stats'``) are reported separately, not as
  parameters.

  Args:
    model_or_name: a registered model name or a linen Module.
    input_shape: one example's shape without the batch axis, e.g. ``(32, 32, 3)``;
      default: the shape the model was registered with.
    num_classes: logits width (model names only).
    batch_size: batch size of the traced input.
    depth: show modules at most this deep (the root is depth 0); deeper modules'
      counts stay included in their ancestors' rows.
    train: trace the training-mode forward pass.
    **options: model options (model names only), e.g. ``stem="small"``.

  Returns:
    The table, as a string with a trailing newline.
  """
  model, label = _build(model_or_name, num_classes, options, "summary")
  shape = _input_shape(model_or_name, input_shape, "summary")
  return _table(model, label, shape, batch_size=batch_size, depth=depth, train=train)


def _int8_bytes(model: nn.Module, variables: Any, x: jax.ShapeDtypeStruct, n_params: int) -> str:
  """The size of ``jdl.quantize``'s int8 model (int8 kernels, float32 per-channel scales, biases and the
  layers it keeps in float; BatchNorm folded), computed abstractly: what ``jdl quantize`` saves."""
  from jdl import quantize  # pylint: disable=g-import-not-at-top

  try:
    arrays = jax.eval_shape(lambda v, x: quantize.quantize(model, v, [x]).arrays(), dict(variables), x)
  except quantize.UnsupportedLayerError as e:
    return f"{_bytes(n_params)} at one byte a parameter ({str(e).split(': ', 1)[-1].split('. ')[0]})"
  size = sum(math.prod(a.shape) * np.dtype(a.dtype).itemsize for a in jax.tree.leaves(arrays))
  return f"{_bytes(int(size))} (jdl quantize: int8 kernels, float32 scales and biases)"


def _table(model: nn.Module, label: str, shape: tuple[int, ...], *, batch_size: int,
           depth: int | None, train: bool) -> str:
  """The body of ``summary`` once the model and the input shape are known."""
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f"summary: batch_size must be a positive int, got {batch_size!r}")
  if depth is not None and (not isinstance(depth, int) or depth < 0):
    raise ValueError(f"summary: depth must be None or an int >= 0, got {depth!r}")

  rows: list[list[Any]] = []
  seen: set[tuple[str, ...]] = set()

  def interceptor(next_fun, args, kwargs, context):
    if context.method_name != "__call__":
      return next_fun(*args, **kwargs)
    path = tuple(context.module.path)
    row = None
    if path not in seen:
      seen.add(path)
      row = [path, type(context.module).__name__, "?"]
      rows.append(row)
    out = next_fun(*args, **kwargs)
    if row is not None:
      row[2] = _format_tree(out)
    return out

  def init(x):
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    with nn.intercept_methods(interceptor):
      return model.init_with_output(rngs, x, train=train)

  x = jax.ShapeDtypeStruct((batch_size, *shape), jnp.float32)
  out, variables = jax.eval_shape(init, x)
  params = _sizes(variables.get("params", {}))
  stats = _sizes(variables.get("batch_stats", {}))
  others = {c: sum(_sizes(v).values()) for c, v in variables.items()
            if c not in ("params", "batch_stats")}

  def subtree(sizes: dict[tuple[str, ...], int], path: tuple[str, ...]) -> int:
    return sum(n for k, n in sizes.items() if k[:len(path)] == path)

  table = [("path", "module", "output", "params", "batch stats")]
  for path, kind, output in rows:
    if depth is not None and len(path) > depth:
      continue
    table.append(("/".join(path) or f"({label})", kind, output,
                  f"{subtree(params, path):,}", f"{subtree(stats, path):,}"))
  widths = [max(len(r[i]) for r in table) for i in range(5)]
  right = (False, False, False, True, True)

  def line(r: Sequence[str]) -> str:
    cells = [c.rjust(w) if rj else c.ljust(w) for c, w, rj in zip(r, widths, right)]
    return "  ".join(cells).rstrip()

  rule = "-" * len(line(["-" * w for w in widths]))
  n_params, n_stats = sum(params.values()), sum(stats.values())
  lines = [f"Model: {label}", rule, line(table[0]), rule, *(line(r) for r in table[1:]), rule,
           f"Input:  {_format_tree(x)}",
           f"Output: {_format_tree(out)}",
           f"Parameters: {n_params:,}",
           f"  float32:          {_bytes(4 * n_params)}",
           f"  bfloat16/float16: {_bytes(2 * n_params)}",
           f"  int8:             {_int8_bytes(model, variables, x, n_params)}",
           f"Batch statistics (not parameters): {n_stats:,}; as float32: {_bytes(4 * n_stats)}"]
  lines += [f"Collection {c!r}: {n:,} values" for c, n in sorted(others.items())]
  return "\n".join(lines) + "\n"


def _parse_shape(text: str) -> tuple[int, ...]:
  parts = text.strip().strip("()[]").replace("x", ",").replace("×", ",").split(",")
  try:
    shape = tuple(int(p) for p in parts if p.strip())
  except ValueError:
    raise argparse.ArgumentTypeError(
        f"expected comma-separated positive ints such as 32,32,3, got {text!r}") from None
  if not shape or any(d <= 0 for d in shape):
    raise argparse.ArgumentTypeError(
        f"expected comma-separated positive ints such as 32,32,3, got {text!r}")
  return shape


def _parse_option(text: str) -> tuple[str, Any]:
  key, sep, value = text.partition("=")
  if not sep or not key.strip():
    raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
  value = value.strip()
  if value.lower() in ("true", "false"):
    return key.strip(), value.lower() == "true"
  try:
    return key.strip(), ast.literal_eval(value)
  except (ValueError, SyntaxError):
    return key.strip(), value


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="jdl summary",
      description="Print a model's layers, output shapes, parameter counts and sizes.")
  parser.add_argument("model", nargs="?", help="a registered model name (see --list), or an experiment (a name "
                                              "or FILE.py): its model, options, input shape and classes")
  parser.add_argument("--input-shape", type=_parse_shape, default=None,
                      help="one example's shape without the batch axis, e.g. 32,32,3 "
                           "(default: the model's registered shape)")
  parser.add_argument("--num-classes", type=int, default=None, help="logits width (default 10, or the "
                                                                    "experiment's dataset's)")
  parser.add_argument("--option", "-o", type=_parse_option, action="append", default=[],
                      metavar="KEY=VALUE",
                      help="a model option, repeatable; values are Python literals "
                           "(hidden=256,256 stem=small dropout=0.1) or plain strings")
  parser.add_argument("--batch-size", type=int, default=1, help="batch size of the traced input")
  parser.add_argument("--depth", type=int, default=None, help="deepest module level to list")
  parser.add_argument("--train", action="store_true", help="trace the training-mode pass")
  parser.add_argument("--list", action="store_true", help="list the registered models and exit")
  parser.add_argument("--import", dest="imports", action="append", metavar="FILE_OR_MODULE", default=[],
                      help="your own file or module to import first (jdl takes it off the line before this parser)")
  return parser


def _from_experiment(experiment: str, num_classes: int | None, options: dict[str, Any],
                     input_shape: Sequence[int] | None) -> tuple[str, int | None, dict[str, Any], Any]:
  """An experiment's model: its name, options and its dataset's input shape and classes (the command line wins)."""
  from jdl import config as config_lib  # pylint: disable=g-import-not-at-top
  from jdl import data  # pylint: disable=g-import-not-at-top

  if not experiment.endswith(".py"):
    try:
      config_lib.find_experiment(experiment)
    except ValueError:  # neither a model nor an experiment: the model registry's error lists the models
      raise MODELS.unknown(experiment, "create") from None
  config = config_lib.load_experiment(experiment)
  info = data.info(config.data.name)
  model_options = dict(config.model.get("options", {}) or {})
  width = model_options.pop("num_classes", None) or info.num_classes or 1
  return (config.model.name, width if num_classes is None else num_classes, {**model_options, **options},
          info.input_shape if input_shape is None else input_shape)


def summary_main(argv: Sequence[str] | None = None) -> int:
  """``jdl summary MODEL [--input-shape 32,32,3] [--num-classes 10] [--option k=v]...``.

  Prints the summary to stdout and returns 0; on a usage error (unknown model,
  bad shape or option) prints the message to stderr and returns 2.

  Args:
    argv: the arguments after ``summary`` (default ``sys.argv[1:]``).
  """
  parser = _parser()
  try:
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
  except SystemExit as e:  # --help (0) or a usage error (2), already printed
    return int(e.code or 0)
  if args.list:
    print("\n".join(list_models()))
    return 0
  if args.model is None:
    parser.print_usage(sys.stderr)
    print("jdl summary: error: MODEL is required (see --list)", file=sys.stderr)
    return 2
  try:
    name, num_classes, options, input_shape = args.model, args.num_classes, dict(args.option), args.input_shape
    if name.endswith(".py") or name not in list_models():
      name, num_classes, options, input_shape = _from_experiment(name, num_classes, options, input_shape)
    # built here rather than through summary(**options), so that model options may share a
    # name with summary's own arguments (depth, train, ...)
    model, label = _build(name, 10 if num_classes is None else num_classes, options, "summary")
    shape = _input_shape(name, input_shape, "summary")
    text = _table(model, label, shape, batch_size=args.batch_size, depth=args.depth,
                  train=args.train)
  except (ValueError, TypeError, ImportError) as e:
    print(f"jdl summary: error: {e}", file=sys.stderr)
    return 2
  print(text, end="")
  return 0


if __name__ == "__main__":
  sys.exit(summary_main())

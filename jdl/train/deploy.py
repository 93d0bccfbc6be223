"""A trained run made deployable: int8 quantization measured (``jdl quantize``) and export (``jdl export``).

``quantize_run(RUN_DIR)`` quantizes the run's network (``jdl.quantize``),
saves the int8 arrays beside the float checkpoint (``RUN_DIR/quantized``,
written by Orbax: a directory appears only once complete) and reports sizes,
test accuracy and loss, each layer's SQNR and inference speed of both
(``quantize.json``). ``export_run(RUN_DIR)`` serialises the float or the int8
network as StableHLO with ``jax.export`` (``RUN_DIR/export/``): a fresh
process calls it with ``jax.export.deserialize`` alone, without jdl or the
experiment file.
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jdl import quantize as quantize_lib
from jdl.data._atomic import atomic_file
from jdl.train import runs as runs_lib

QUANTIZED = "quantized"
QUANTIZE_FILE = "quantize.json"
EXPORT = "export"
RUN_METHODS = {"ptq-static": "static", "ptq-dynamic": "dynamic"}


def _check_int(name: str, value: Any, low: int = 1) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < low:
    raise ValueError(f"{name}: expected an int >= {low}, got {value!r}")


def _calibration(run: runs_lib.TrainedRun, batches: int, batch_size: int) -> list[jax.Array]:
  """The first ``batches`` batches of the training split, as the network takes them (deterministic)."""
  arrays = run.split("train")
  n = len(arrays[run.input_key])
  if n < batch_size:
    batch_size = n
  batches = min(batches, n // batch_size)
  return [run.inputs({run.input_key: arrays[run.input_key][i * batch_size:(i + 1) * batch_size]})
          for i in range(batches)]


def _evaluate(run: runs_lib.TrainedRun, apply, split: str = "test", batch_size: int = 1000) -> dict[str, float]:
  """Accuracy and the run's loss of ``apply(x) -> logits`` on ``split``."""
  from jdl.train import experiment  # pylint: disable=g-import-not-at-top

  arrays = run.split(split)
  loss_fn = experiment.build_loss(run.config)
  labels = np.asarray(arrays["label"])
  correct, loss = 0, 0.0
  for start in range(0, len(labels), batch_size):
    x = run.inputs({run.input_key: arrays[run.input_key][start:start + batch_size]})
    batch = {k: jnp.asarray(np.asarray(v)[start:start + batch_size]) for k, v in arrays.items()}
    logits = apply(x)
    loss += float(jnp.sum(loss_fn(logits, batch)))
    pred = np.asarray(logits[..., 0] > 0) if logits.shape[-1] == 1 else np.argmax(np.asarray(logits), axis=-1)
    correct += int(np.sum(pred == labels[start:start + batch_size]))
  return {"accuracy": correct / len(labels), "loss": loss / len(labels)}


def _speed(apply, x: jax.Array, seconds: float = 1.0) -> float:
  """Examples per second of ``apply`` on batch ``x`` (compiled first, then timed for about ``seconds``)."""
  jax.block_until_ready(apply(x))
  calls, start = 0, time.perf_counter()
  while True:
    jax.block_until_ready(apply(x))
    calls += 1
    elapsed = time.perf_counter() - start
    if elapsed >= seconds and calls >= 3:
      return calls * x.shape[0] / elapsed


def _check_method(method: str) -> None:
  if method not in RUN_METHODS:
    raise ValueError(f"method: expected one of {', '.join(RUN_METHODS)}, got {method!r}")


def quantize_run(directory: str | pathlib.Path, *, method: str = "ptq-static", calibration_batches: int = 8,
                 calibration: str = "minmax", keep_float: Sequence[str] = (), batch_size: int = 256,
                 epoch: int | str | None = None, measure_speed: bool = True) -> dict[str, Any]:
  """Quantizes a trained run, saves ``RUN_DIR/quantized`` and returns (and writes) the ``quantize.json`` report.

  Every argument is checked before the run is loaded or anything compiled.
  ``calibration_batches`` batches of ``batch_size`` training examples set the
  static activation scales (the dynamic method uses the first one for the
  shapes only).
  """
  from jdl.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  _check_method(method)
  if calibration not in quantize_lib.CALIBRATIONS:
    raise ValueError(f"calibration: expected one of {', '.join(quantize_lib.CALIBRATIONS)}, got {calibration!r}")
  if method == "ptq-dynamic" and calibration != "minmax":
    raise ValueError(f"calibration: {calibration!r} sets static activation scales; ptq-dynamic takes each batch's "
                     "own range (leave --calibration out, or use --method ptq-static)")
  _check_int("calibration_batches", calibration_batches)
  _check_int("batch_size", batch_size)
  keep_float = [k.strip() for k in keep_float if k.strip()]
  run = runs_lib.load_run(directory, epoch)
  batches = _calibration(run, calibration_batches, batch_size)
  qm = quantize_lib.quantize(run.model, run.variables, batches, method=RUN_METHODS[method],
                             calibration_method=calibration, keep_float=keep_float)
  target = run.directory / QUANTIZED
  # The report is written last and names what the arrays are: a quantization cut short leaves no report, and
  # load_quantized then refuses the directory rather than pairing new arrays with an old report.
  (run.directory / QUANTIZE_FILE).unlink(missing_ok=True)
  with ocp.StandardCheckpointer() as checkpointer:  # a temporary directory renamed when complete
    checkpointer.save(target.absolute(), jax.device_get(qm.arrays()), force=True)
  float_apply = jax.jit(lambda v, x: run.model.apply(v, x, train=False))
  report: dict[str, Any] = {
      "run": str(run.directory), "experiment": run.config.get("name"), "epoch": run.epoch, "method": method,
      "calibration": calibration, "calibration_batches": len(batches), "calibration_batch_size": int(batches[0].shape[0]),
      "keep_float": list(keep_float), "folded_batch_norm": qm.folded,
      "bytes": {"float32": quantize_lib.float_nbytes(run.variables), "int8": qm.nbytes()},
      "test": {"float32": _evaluate(run, lambda x: float_apply(run.variables, x)), "int8": _evaluate(run, qm.apply)},
      "sqnr_db": quantize_lib.layer_sqnr(qm, run.variables, batches[0]),
  }
  report["bytes"]["ratio"] = report["bytes"]["float32"] / report["bytes"]["int8"]
  if measure_speed:  # the two alternate, three rounds each: the best round of each (a shared machine's noise)
    test = run.inputs({run.input_key: run.split("test")[run.input_key][:256]})
    fns = {"float32": lambda x: float_apply(run.variables, x), "int8": qm.apply}
    report["examples_per_second"] = {}
    for b in (1, 256):
      rounds = {name: [] for name in fns}
      for _ in range(3):
        for name, fn in fns.items():
          rounds[name].append(_speed(fn, test[:b], seconds=0.5))
      report["examples_per_second"][f"batch_{b}"] = {name: max(v) for name, v in rounds.items()}
  report["machine"] = {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()]}
  report["meta"] = {"layers": sorted(qm.layers), "quantize_method": qm.method}
  workdir_lib.write_json(run.directory / QUANTIZE_FILE, report)
  return report


def load_quantized(directory: str | pathlib.Path, *, with_run: bool = False) -> Any:
  """The int8 model ``quantize_run`` saved in ``directory`` (the run's model with the saved arrays); with
  ``with_run``, ``(model, the TrainedRun at the quantized epoch)``."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  from jdl.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  directory = pathlib.Path(directory)
  report = workdir_lib.read_json(directory / QUANTIZE_FILE, "the quantization report")
  if report is None or not (directory / QUANTIZED).is_dir():
    raise FileNotFoundError(f"quantized: {directory} holds no int8 model; make one with `jdl quantize {directory}`")
  run = runs_lib.load_run(directory, report.get("epoch"))
  with ocp.StandardCheckpointer() as checkpointer:
    arrays = checkpointer.restore((directory / QUANTIZED).absolute())
  arrays = jax.tree.map(jnp.asarray, arrays)
  qm = quantize_lib.QuantizedModel(model=run.model, rest=dict(arrays.get("rest", {})), layers=dict(arrays["layers"]),
                                   folded=dict(report.get("folded_batch_norm", {})),
                                   method=report["meta"]["quantize_method"])
  return (qm, run) if with_run else qm


def export_run(directory: str | pathlib.Path, *, int8: bool = False, epoch: int | str | None = None) -> dict[str, Any]:
  """Serialises the run's network (``int8``: the quantized one) to ``RUN_DIR/export/model[_int8].jax``.

  The exported function takes a batch (any size) of inputs as the dataset
  stores them (uint8 images are scaled to [0, 1] inside) and returns the
  logits; ``export.json`` beside it names the input's shape and dtype and the
  class names. Call it from any process::

      from jax import export
      model = export.deserialize(open("runs/cnn/export/model.jax", "rb").read())
      logits = model.call(images_uint8)
  """
  from jdl.train import step  # pylint: disable=g-import-not-at-top
  from jdl.train import workdir as workdir_lib  # pylint: disable=g-import-not-at-top

  directory = pathlib.Path(directory)
  if int8 and epoch is not None:
    raise ValueError(f"epoch: the int8 network is the one `jdl quantize` made (its epoch is in {QUANTIZE_FILE}); "
                     f"--epoch applies to the float32 export only, got {epoch!r}")
  if int8:
    qm, run = load_quantized(directory, with_run=True)
    arrays = qm.arrays()
    network = lambda x: qm.apply_with(arrays["rest"], arrays["layers"], x)  # noqa: E731
  else:
    run = runs_lib.load_run(directory, epoch)
    variables = run.variables
    network = lambda x: run.model.apply(variables, x, train=False)  # noqa: E731
  stored = np.asarray(run.split("test")[run.input_key][:1])
  key = run.input_key

  def serve(x):
    return network(step.scale_images({key: x}, key)[key])

  shape = jax.export.symbolic_shape("b, " + ", ".join(str(d) for d in stored.shape[1:]))
  exported = jax.export.export(jax.jit(serve))(jax.ShapeDtypeStruct(shape, stored.dtype))
  out = directory / EXPORT
  out.mkdir(exist_ok=True)
  name = "model_int8.jax" if int8 else "model.jax"
  with atomic_file(out / name) as f:  # a temporary file renamed when complete
    f.write(exported.serialize())
  info = {"file": name, "input_shape": ["batch", *stored.shape[1:]], "input_dtype": str(stored.dtype),
          "input_key": key, "outputs": "logits", "class_names": list(run.class_names or []),
          "experiment": run.config.get("name"), "epoch": run.epoch, "int8": int8,
          "platforms": list(exported.platforms)}
  workdir_lib.write_json(out / ("export_int8.json" if int8 else "export.json"), info)
  return {"path": str(out / name), **info}


def report_lines(report: dict[str, Any]) -> list[str]:
  """``quantize.json`` as the Markdown table ``jdl quantize`` prints."""
  b, t = report["bytes"], report["test"]
  lines = [f"{report['experiment']} (epoch {report['epoch']}), {report['method']}, calibration "
           f"{report['calibration']} on {report['calibration_batches']} x {report['calibration_batch_size']}",
           "| | float32 | int8 |", "|---|---:|---:|",
           f"| parameter bytes | {b['float32']:,} | {b['int8']:,} ({b['ratio']:.2f}x smaller) |",
           f"| test accuracy | {t['float32']['accuracy']:.4f} | {t['int8']['accuracy']:.4f} |",
           f"| test loss | {t['float32']['loss']:.4f} | {t['int8']['loss']:.4f} |"]
  for batch, speeds in report.get("examples_per_second", {}).items():
    lines.append(f"| examples/s, {batch.replace('_', ' ')} | {speeds['float32']:,.0f} | {speeds['int8']:,.0f} |")
  lines.append("SQNR by layer (dB): " + ", ".join(f"{k} {v:.1f}" for k, v in report["sqnr_db"].items()))
  return lines

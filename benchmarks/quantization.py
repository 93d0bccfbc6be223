"""int8 against float32 on trained runs: bytes, test accuracy and loss, SQNR, inference speed, and where the time goes.

For each run directory: ``jdl.train.deploy.quantize_run`` (static PTQ, 8
calibration batches of 256; the report is the run's ``quantize.json``), then
each quantized layer timed alone at batch 256 on its real input, float32
(the layer as the float model runs it, BatchNorm folded) against int8
(quantize the input, the int8 × int8 → int32 product, rescale), so the
whole-network figures can be read layer by layer.

    python benchmarks/quantization.py RUN_DIR [RUN_DIR ...] [--json FILE] [--md FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from overhead import machine  # noqa: E402


def _seconds(fn, *args, repeat: int = 20) -> float:
  import jax

  jax.block_until_ready(fn(*args))
  best = float("inf")
  for _ in range(3):
    start = time.perf_counter()
    for _ in range(repeat):
      jax.block_until_ready(fn(*args))
    best = min(best, (time.perf_counter() - start) / repeat)
  return best


def layer_times(directory: str, batch: int = 256) -> dict[str, dict[str, float]]:
  """Seconds per call of each quantized layer, float32 and int8, on its input from ``batch`` test examples."""
  import flax.linen as nn
  import jax

  from jdl import quantize as Q
  from jdl.train import deploy, runs

  run = runs.load_run(directory)
  qm = deploy.load_quantized(directory)
  x = run.inputs({run.input_key: run.split("test")[run.input_key][:batch]})
  infos = Q.inspect_layers(run.model, run.variables, x)
  weights, folded = Q.fold_batch_norm(run.variables, infos)
  modules, inputs = {}, {}

  def capture(next_fun, args, kwargs, context):
    if context.method_name == "__call__" and "/".join(context.module.path) in qm.layers:
      path = "/".join(context.module.path)
      modules[path], inputs[path] = context.module, args[0]
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(capture):
    run.model.apply(run.variables, x, train=False)
  out = {}
  for path, module in modules.items():
    w = weights[path]
    f = jax.jit(lambda v, k, b, m=module: Q._float_layer(m, v, k, b))  # pylint: disable=protected-access
    q = jax.jit(lambda v, layer, m=module: Q._int8_layer(m, v, layer))  # pylint: disable=protected-access
    out[path] = {"float32": _seconds(f, inputs[path], w["kernel"], w["bias"]),
                 "int8": _seconds(q, inputs[path], qm.layers[path]), "input_shape": list(inputs[path].shape)}
  return out


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("runs", nargs="+")
  parser.add_argument("--json")
  parser.add_argument("--md")
  args = parser.parse_args(argv)
  from jdl.train import deploy

  results = []
  for directory in args.runs:
    report = deploy.quantize_run(directory)
    config = json.loads((Path(directory) / "config.json").read_text())
    report["quantization_aware"] = bool(config.get("quantization", {}).get("enabled"))
    report["layer_seconds_batch_256"] = layer_times(directory)
    results.append(report)
    print("\n".join(deploy.report_lines(report)))
    for path, t in report["layer_seconds_batch_256"].items():
      print(f"  {path}: float32 {t['float32'] * 1e3:.3f} ms, int8 {t['int8'] * 1e3:.3f} ms")
  out = {"benchmark": "quantization", "machine": machine(), "results": results}
  if args.json:
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
  if args.md:
    lines = [f"# int8 quantization (static PTQ), {out['machine']['cpu']} ({out['machine']['cpu_count']} cores)", "",
             "`python benchmarks/quantization.py " + " ".join(args.runs) + "`", ""]
    for r in results:
      qat = " (quantization-aware training)" if r.get("quantization_aware") else ""
      lines += [f"## {r['experiment']}{qat}: `{r['run']}`", "", *deploy.report_lines(r), "", "| layer (batch 256) | input | float32 ms | int8 ms |",
                "|---|---|---:|---:|"]
      lines += [f"| {p} | {t['input_shape']} | {t['float32'] * 1e3:.3f} | {t['int8'] * 1e3:.3f} |"
                for p, t in r["layer_seconds_batch_256"].items()]
      lines.append("")
    Path(args.md).write_text("\n".join(lines))
  return out


if __name__ == "__main__":
  main()

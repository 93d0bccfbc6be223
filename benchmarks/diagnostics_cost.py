"""What training diagnostics cost: the probe's seconds per measured epoch against the epoch's training seconds.

Runs ``jdl train`` in this process with ``config.diagnostics.enabled`` and
times every ``Diagnostics.epoch_metrics`` call (a forward and backward pass on
the probe batch, the optimizer's update for it, one host read). The first
call includes the probe program's compilation; the cost of the others is
reported as a fraction of the epoch's ``epoch_seconds`` (training only: the
evaluation and the checkpoint come on top, so the fraction of the whole epoch
is smaller still).

    python benchmarks/diagnostics_cost.py [--json benchmarks/results/diagnostics_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from overhead import machine  # noqa: E402

CASES = [
    ("mlp_deep_diagnostics", ["--config.epochs=3"]),
    ("cnn_fashion_mnist", ["--config.epochs=3", "--config.diagnostics.enabled=true"]),
]


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--json", help="write the figures here")
  args = parser.parse_args(argv)
  from jdl import cli
  from jdl.train import diagnostics

  calls: list[float] = []
  original = diagnostics.Diagnostics.epoch_metrics

  def timed(self, run, epoch):
    start = time.perf_counter()
    out = original(self, run, epoch)
    calls.append(time.perf_counter() - start)
    return out

  diagnostics.Diagnostics.epoch_metrics = timed
  results = []
  for experiment, extra in CASES:
    calls.clear()
    with tempfile.TemporaryDirectory() as tmp:
      code = cli.main(["train", experiment, "--workdir", f"{tmp}/run", "--config.progress=false",
                       "--config.plot=false", *extra])
      if code:
        raise SystemExit(f"jdl train {experiment} failed ({code})")
      lines = [json.loads(t) for t in Path(f"{tmp}/run/metrics.jsonl").read_text().splitlines()]
    epoch_seconds = [line["epoch_seconds"] for line in lines]
    later, epochs = calls[1:], epoch_seconds[1:]
    row = {"experiment": experiment, "probe_examples": 512 if experiment == "mlp_deep_diagnostics" else 256,
           "first_call_seconds": calls[0], "later_call_seconds": later,
           "epoch_seconds": epoch_seconds,
           "fraction_of_epoch": statistics.mean(later) / statistics.mean(epochs)}
    results.append(row)
    print(f"{experiment}: first call (compiles) {calls[0]:.2f} s; later calls {statistics.mean(later) * 1e3:.1f} ms "
          f"= {100 * row['fraction_of_epoch']:.2f}% of a {statistics.mean(epochs):.1f} s epoch")
  out = {"benchmark": "diagnostics_cost", "machine": machine(), "results": results}
  if args.json:
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
  return out


if __name__ == "__main__":
  main()

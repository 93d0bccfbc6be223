"""Every lesson at its full size, timed: the figures of docs/lessons.md and the time each takes.

    python benchmarks/lessons.py [--lessons 1,2,...]

Each lesson runs in a fresh process (`python lessons/NN_*.py --out docs/figures/lessons`), as a student runs
it; the wall time includes starting Python and JAX. Writes benchmarks/results/lessons_cpu.{json,md} and the
printed figures of each lesson into it.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--lessons", default="", help="numbers to run (default: all)")
  args = parser.parse_args()
  wanted = {int(n) for n in args.lessons.split(",") if n}
  rows = []
  for path in sorted((ROOT / "lessons").glob("[0-9][0-9]_*.py")):
    if wanted and int(path.name[:2]) not in wanted:
      continue
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(path.relative_to(ROOT)), "--out", "docs/figures/lessons"],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    seconds = time.perf_counter() - start
    relative = lambda text: text.replace(f"{ROOT}/", "")  # noqa: E731  (the record names no machine's paths)
    rows.append({"lesson": path.stem, "seconds": round(seconds, 1), "returncode": done.returncode,
                 "output": relative(done.stdout[-4000:]), "error": relative(done.stderr[-2000:]) if done.returncode else ""})
    print(f"{path.stem}: {seconds:.1f} s, exit {done.returncode}", flush=True)
  previous = RESULTS / "lessons_cpu.json"
  if wanted and previous.is_file():  # the others as they were measured
    kept = [r for r in json.loads(previous.read_text())["lessons"] if r["lesson"] not in {x["lesson"] for x in rows}]
    rows = sorted(kept + rows, key=lambda r: r["lesson"])
  result = {"machine": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()},
            "date": time.strftime("%Y-%m-%d"), "lessons": rows}
  RESULTS.mkdir(parents=True, exist_ok=True)
  (RESULTS / "lessons_cpu.json").write_text(json.dumps(result, indent=1) + "\n")
  lines = ["| lesson | seconds (full size, a fresh process) |", "|---|---:|"]
  lines += [f"| `{r['lesson']}` | {r['seconds']:.1f}{'' if r['returncode'] == 0 else ' (failed)'} |" for r in rows]
  text = (f"# The lessons at full size (CPU)\n\n`python benchmarks/lessons.py`\n\nMachine: {result['machine']}, "
          f"{result['date']}. Each lesson in a fresh process, Python and JAX start-up included.\n\n"
          + "\n".join(lines) + "\n\nWhat each printed is in `benchmarks/results/lessons_cpu.json`.\n")
  (RESULTS / "lessons_cpu.md").write_text(text)
  print(text)
  return 0 if all(r["returncode"] == 0 for r in rows) else 1


if __name__ == "__main__":
  sys.exit(main())

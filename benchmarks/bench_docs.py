"""The results section of docs/benchmarks.md, written from a suite's records.

    python benchmarks/bench_docs.py --results benchmarks/results/small --docs

reads ``DIR/results.jsonl`` and ``DIR/meta.json`` (the targets in force), and
renders the leaderboard with score intervals, the final test metric per
workload and optimizer with intervals (bold only where the paired comparison
with the runner-up separates them), steps to target, the leave-one-out
stability, the held-out variants and the unresolved pairs. With ``--docs`` they
replace the ``bench-results`` block of docs/benchmarks.md (``_doc_blocks``);
``tests/test_docs.py`` renders them again and compares. The bootstrap is
seeded, so the same records always give the same text.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _doc_blocks  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGE, BLOCK = "docs/benchmarks.md", "bench-results"
RESULTS = "benchmarks/results/small"


def _num(x, digits=3):
  if x is None:
    return "–"
  if isinstance(x, float) and math.isinf(x):
    return "∞"
  return f"{x:.{digits}g}"


def _ci(ci, digits=3):
  return f" [{_num(ci[0], digits)}, {_num(ci[1], digits)}]" if ci else ""


def tables(directory: pathlib.Path) -> str:
  from jdl.bench import analysis  # pylint: disable=g-import-not-at-top
  from jdl.bench import suite as suite_lib  # pylint: disable=g-import-not-at-top

  records = analysis.load(directory)
  sessions = json.loads((directory / "meta.json").read_text())
  last = sessions[-1]
  all_records = records
  pairs = suite_lib.comparison(records, sessions).summaries()  # the runs of the suite's protocol only
  board = analysis.leaderboard(pairs)
  winners = analysis.workload_winners(pairs)
  optimizers = [r["optimizer"] for r in board] or sorted({s["optimizer"] for s in pairs})
  optimizers += sorted({s["optimizer"] for s in pairs} - set(optimizers))
  by = {(s["workload"], s["optimizer"]): s for s in pairs}
  workloads = sorted({s["workload"] for s in pairs}, key=lambda w: (
      by[next(k for k in by if k[0] == w)]["toy"], bool(by[next(k for k in by if k[0] == w)]["variant_of"]), w))
  roles = {}
  for r in all_records:
    roles[r.get("role", "tune")] = roles.get(r.get("role", "tune"), 0) + 1
  machine = f"{last.get('cpu_count')} CPUs, {last.get('platform', '').split('-with')[0]}, backend {last.get('backend')}"
  versions = last.get("versions", {})
  out = [
      f"Written by `python benchmarks/bench_docs.py --docs` from `{directory.relative_to(ROOT)}` "
      f"(last session started {last.get('started')}): {len(all_records)} runs ({roles.get('tune', 0)} tuning, "
      f"{roles.get('final', 0)} confirmation, {roles.get('target', 0)} target-setting) on {machine}, JAX "
      f"{versions.get('jax')}; targets from {last.get('targets_source') or 'the workloads'}.",
      "",
      "**Leaderboard** (scored workloads: no toy problem, held-out variant or unresolved pair; profile score on "
      "steps to the validation target, 95% bootstrap interval over seeds):",
      "",
      "| rank | optimizer | score (steps) [95% CI] | targets reached | mean rank of final test | diverged trials |",
      "|---|---|---|---:|---:|---:|",
  ]
  for i, r in enumerate(board, start=1):
    div = "–" if r["diverged_trials"] is None else f"{100 * r['diverged_trials']:.0f}%"
    out.append(f"| {i} | {r['optimizer']} | {r['score_steps']:.3f}{_ci(r['score_steps_ci'])} | "
               f"{r['targets']}/{r['workloads']} | {_num(r['mean_rank'])} | {div} |")
  if board:
    out += ["", f"{board[0]['optimizer']} leads; its margin over {board[1]['optimizer'] if len(board) > 1 else '–'} "
            + ("is separated (the 95% interval excludes zero)." if board[0]["separated"] else
               "is within noise (the 95% interval includes zero).")]
  out += ["", "**Final test metric** of the confirmation seeds: mean ± sd [95% CI] (the test set, reported only; "
          "bold: the best on the workload where the paired comparison with the runner-up separates them; losses "
          "lower is better):", "",
          "| workload | " + " | ".join(optimizers) + " |", "|---|" + "---|" * len(optimizers)]
  for w in workloads:
    first = next(s for s in pairs if s["workload"] == w)
    tag = " (toy)" if first["toy"] else f" (variant of {first['variant_of']})" if first["variant_of"] else ""
    arrow = "↑" if first["mode"] == "max" else "↓"
    win = winners.get(w, {}).get("test")
    cells = []
    for o in optimizers:
      s = by.get((w, o))
      if s is None:
        cells.append("–")
        continue
      if not s["seeds"]:
        cells.append("every trial diverged" if s["unresolved"] else "–")
        continue
      st = s["final_test"]
      text = f"{_num(st['mean'])} ± {_num(st['std'], 2)}{_ci(st.get('ci'))}"
      if win and win["best"] == o and win["separated"]:
        text = f"**{text}**"
      if s["unresolved"]:
        text += " (unresolved)"
      cells.append(text)
    out.append(f"| {w}{tag} ({first['metric']}, {arrow}) | " + " | ".join(cells) + " |")
  out += ["", "**Steps to the validation target**: median over seeds [95% CI] (∞: not reached by more than half the seeds; "
          "it: finite only when more than half of the seeds reach it); the target in brackets:", "",
          "| workload | " + " | ".join(optimizers) + " |", "|---|" + "---|" * len(optimizers)]
  for w in workloads:
    first = next(s for s in pairs if s["workload"] == w)
    cells = []
    for o in optimizers:
      s = by.get((w, o))
      cells.append("–" if s is None or not s["seeds"] else f"{_num(s['steps_to_target'], 4)}{_ci(s['steps_ci'], 4)}")
    out.append(f"| {w} ({_num(first['target'], 4)}) | " + " | ".join(cells) + " |")
  loo = analysis.leave_one_out(pairs)
  if loo:
    changed = [r for r in loo if not r["same_leader"]]
    out += ["", f"**Stability**: with one workload or one optimizer left out, the leader changes in {len(changed)} "
            f"of {len(loo)} cases" + (": " + "; ".join(f"without {r['left_out'].split(' ', 1)[1]}, {r['leader']}"
                                                      for r in changed) if changed else "") + "."]
  variants = sorted({s["workload"] for s in pairs if s["variant_of"]})
  for v in variants:
    base = next(s["variant_of"] for s in pairs if s["workload"] == v)

    def order(w):
      return analysis.speed_order([s for s in pairs if s["workload"] == w])

    out.append(f"Held-out variant {v} of {base}: Kendall τ of the order by steps to target "
               f"{_num(analysis.kendall_tau(order(base), order(v)))}.")
  unresolved = [s for s in pairs if s["unresolved"]]
  if unresolved:
    out += ["", "Unresolved (the pick still on an edge after the extensions, or every trial diverged; they count as "
            "not reaching the target): " + ", ".join(f"{s['workload']} / {s['optimizer']}" for s in unresolved) + "."]
  incomplete = sorted({s["workload"] for s in pairs if s.get("incomplete")})
  if incomplete:
    out += ["", "Still running (left out of the score until complete): " + ", ".join(incomplete) + "."]
  return "\n".join(out)


def render_docs(results: str = RESULTS) -> dict[tuple[str, str], str]:
  """``{(page, block): text}`` of the blocks this script writes."""
  return {(PAGE, BLOCK): tables(ROOT / results) + "\n"}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--results", default=RESULTS, help="a `jdl bench run` results directory")
  p.add_argument("--docs", action="store_true", help=f"rewrite the {BLOCK} block of {PAGE}")
  args = p.parse_args(argv)
  _doc_blocks.publish(render_docs(args.results), args.docs)
  return 0


if __name__ == "__main__":
  sys.exit(main())

"""The kill harness, short: a few SIGKILLs of `jdl train` and `jdl bench run`, resumed; nothing lost.

`benchmarks/kill_resume.py --kills 200` is the long version (benchmarks/results/kill_resume_cpu.md).
"""

import importlib.util
import pathlib

import pytest


def _harness():
  path = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "kill_resume.py"
  spec = importlib.util.spec_from_file_location("kill_resume", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.slow
def test_random_kills_lose_nothing_and_resume_to_the_uninterrupted_result():
  # One kill of jdl train and one of jdl bench run here, the attempt after each kill
  # run to the end (a subprocess start-up costs seconds); benchmarks/kill_resume.py runs 200.
  stats = _harness().run(kills=1, bench_kills=1, epochs=3, seed=1, log=lambda line: None, max_kills_per_trial=1)
  assert stats["problems"] == [] and stats["bench"]["problems"] == []
  assert stats["kills"] == 1 and stats["bench"]["kills"] == 1
  assert stats["trials"] >= 1 and stats["bench"]["trials"] >= 1

"""The documentation cannot drift: README.md and docs/*.md checked against the code and the result files.

* Every Python code block runs, page by page, as a reader would paste them. The blocks of a page run
  in order in one namespace (a page reads as one session), in a fresh directory where ``runs/cnn`` is
  a small trained `cnn_fashion_mnist` run (quantized and exported, as the pages' shell commands leave
  it) and Fashion-MNIST is the tests' tiny copy.
* Every shell command (```sh, ```bash, ```shell, ```console blocks, and unlabelled blocks that hold
  commands) is checked without running anything heavy: ``jdl ...`` by ``jdl.cli.check_command`` (the
  CLI's own parsers; the experiment loaded and its overrides applied and checked as ``jdl train``
  does), ``make T`` against the Makefile's targets, ``python SCRIPT ARGS`` / ``python -m MODULE ARGS``
  by the script's own argparse parser, ``pip install 'jdl[EXTRA]'`` against pyproject's extras; any
  other program must be on ``PROGRAMS``. Files a page defines in a Python block headed ``# NAME.py``
  are there for its commands; paths under ``runs/`` (what an earlier command writes) and the
  reader's own files (``READER_FILES``) may be missing, which leaves what depends on them unchecked.
* Every block of measured figures between ``<!-- NAME:begin ... -->`` and ``<!-- NAME:end -->`` is
  what its benchmark script renders from its file in ``benchmarks/results/`` (``--docs`` writes it).
"""

import importlib.util
import os
import pathlib
import re
import shlex
import subprocess
import sys
import tomllib

import pytest

from jdl import cli
from jdl.registry import scoped_all

# One worker runs this module, so that its module-scoped run is set up once (make test: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("docs")

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [p for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
         if "```python" in p.read_text()]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks(page):
  return BLOCK.findall(page.read_text())


@pytest.fixture(scope="module")
def workspace(tiny_dirs, tmp_path_factory):
  from conftest import use_tiny_data  # pylint: disable=g-import-not-at-top

  where = tmp_path_factory.mktemp("docs")
  with pytest.MonkeyPatch.context() as patch:
    use_tiny_data(tiny_dirs, patch)
    patch.chdir(where)
    small = ["--config.epochs=1", "--config.model.options.features=(4, 8)", "--config.micro_batches=1",
             "--config.progress=false", "--config.data.eval_batch_size=100", "--config.data.batch_size=32",
             "--config.optimizer.schedule.warmup_steps=2"]
    assert cli.main(["train", "cnn_fashion_mnist", "--workdir", "runs/cnn", *small]) == 0
    yield where, patch


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_python_blocks_of_a_page_run(workspace, page):
  where, patch = workspace
  if page.name == "quantization.md" and not (where / "runs/cnn/export").exists():  # its shell commands, first
    assert cli.main(["quantize", "runs/cnn", "--calibration-batches", "2", "--no-speed"]) == 0
    assert cli.main(["export", "runs/cnn", "--int8"]) == 0
  if page.name == "transfer.md" and not (where / "resnet18.pth").exists():  # the files its blocks name
    _transfer_files(where)
  namespace = {"__name__": f"docs_{page.stem}"}
  found = blocks(page)
  assert found
  with scoped_all():  # what a page registers (README's my_net ...) does not leak into other tests
    for i, code in enumerate(found):
      exec(compile(code, f"{page.relative_to(ROOT)} block {i}", "exec"), namespace)  # pylint: disable=exec-used


def _transfer_files(where):
  """A torchvision-layout ResNet-18 state dict (random weights) and a folder of cat and dog images."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top

  import _torchvision_layouts  # pylint: disable=g-import-not-at-top

  torch.manual_seed(0)
  torch.save(_torchvision_layouts.resnet18().state_dict(), where / "resnet18.pth")
  rng = np.random.default_rng(0)
  for k, name in enumerate(("cat", "dog")):
    (where / "pets" / name).mkdir(parents=True)
    for i in range(5):
      pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) // (k + 1)
      Image.fromarray(pixels).save(where / "pets" / name / f"{i}.png")


# --------------------------------------------------------------------------- #
# Shell blocks: every command checked.
# --------------------------------------------------------------------------- #

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
SHELL_LANGUAGES = ("sh", "bash", "shell", "console")
# Programs a command may run besides jdl, make, python and pip (checked more closely below). A new kind of
# command is added here deliberately.
PROGRAMS = ("cd", "ls", "export", "git", "tensorboard", "sbatch", "apt-get", "mkdir")
WRAPPERS = ("srun", "sudo")  # their own options first, then a command checked as any other
# Files the pages name as the reader's own (images, weights, folders, shared directories); may be missing.
READER_FILES = ("my_experiment.py", "shoe.png", "more_images.npy", "resnet18-f37072fd.pth", "cats_vs_dogs", "/shared/")
# Shell variables a page uses without setting them (SLURM sets it in a job).
ENVIRONMENT = {"SLURM_JOB_ID": "12345"}


def _first_word(line):
  line = line.strip()
  return (line[2:] if line.startswith("$ ") else line).split(" ", 1)[0]


def _holds_commands(body):
  """An unlabelled block holds commands when one of its lines starts with a program a command runs."""
  known = {"jdl", "make", "python", "python3", "pip", *PROGRAMS, *WRAPPERS}
  return any(_first_word(line) in known for line in body.splitlines())


def shell_blocks(text):
  """``(line number, language, body)`` of each block of commands in a page's Markdown."""
  found = []
  for m in FENCE.finditer(text):
    language, body = m.group(1), m.group(2)
    if language in SHELL_LANGUAGES or (not language and _holds_commands(body)):
      found.append((text[:m.start()].count("\n") + 2, language, body))
  return found


def commands(language, body):
  """``(line number within the block, the command line)``: continuations joined, console output left out."""
  lines, start, pending = [], 0, ""
  for i, line in enumerate(body.splitlines()):
    if language == "console":
      if not pending and not line.startswith("$ "):
        continue  # output
    if not pending:
      start = i
      line = line[2:] if line.startswith("$ ") else line
    if line.endswith("\\"):
      pending += line[:-1] + " "
      continue
    line, pending = pending + line, ""
    if line.strip():
      lines.append((start, line.strip()))
  return lines


def _words(line):
  lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
  lexer.whitespace_split = True
  lexer.commenters = "#"
  return list(lexer)


VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")
FOR_LOOP = re.compile(r"^for (\w+) in ([^;]+); do (.*?);? done$")


def _expand(line, env):
  """``$NAME`` and ``${NAME}`` replaced by their values (unquoted, as a shell splits them); an unknown one fails."""
  def value(m):
    name = m.group(1) or m.group(2)
    if name not in env:
      raise ValueError(f"${name}: a shell variable the page does not set")
    return env[name]
  return VARIABLE.sub(value, line)


class ShellChecker:
  """Checks a page's commands in order (variables set by one are seen by the next)."""

  def __init__(self, where):
    self.where = where  # the directory jdl's commands run in (the page's own files written there)
    self.env = dict(ENVIRONMENT)
    self.makefile_targets = set(re.findall(r"^([\w.-]+):(?!=)", (ROOT / "Makefile").read_text(), re.M))
    self.extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])

  def line(self, line):
    """Checks one command line; raises ``ValueError`` (or the check's own error) when it would fail."""
    loop = FOR_LOOP.match(line)
    if loop:
      for value in loop.group(2).split():
        self.env[loop.group(1)] = value
        self.line(loop.group(3))
      return
    words = _words(_expand(line, self.env))
    command = []
    for word in [*words, ";"]:
      if word in (";", "&&", "||", "|", "&"):
        if command:
          self.simple(command)
        elif word != ";":
          raise ValueError(f"{word!r} with no command before it")
        command = []
      elif word in ("(", ")", "<", ">", ">>"):
        raise ValueError(f"{word!r}: subshells and redirections are not checked; write plain commands")
      else:
        command.append(word)

  def simple(self, words):
    while words and re.match(r"^\w+=", words[0]):  # NAME=value before a command, or alone: an assignment
      name, value = words.pop(0).split("=", 1)
      if not words:
        self.env[name] = value
    if not words:
      return
    program, args = words[0], words[1:]
    if program in WRAPPERS:
      while args and args[0].startswith("-"):
        args.pop(0)
      if not args:
        raise ValueError(f"{program}: no command to run")
      self.simple(args)
    elif program == "jdl":
      self.jdl(args)
    elif program == "make":
      targets = [a for a in args if not a.startswith("-") and "=" not in a]
      unknown = [t for t in targets if t not in self.makefile_targets]
      if unknown:
        raise ValueError(f"make: no target {', '.join(unknown)} in the Makefile; its targets: "
                         f"{', '.join(sorted(self.makefile_targets))}")
    elif program in ("python", "python3"):
      check_python_arguments(args)
    elif program == "pip":
      for spec in args:
        extras = re.match(r"^jdl\[([\w,-]+)\]", spec)
        if extras and set(extras.group(1).split(",")) - self.extras:
          raise ValueError(f"pip: jdl has no extra {extras.group(1)!r}; its extras: {', '.join(sorted(self.extras))}")
    elif program == "export":
      for arg in args:
        name, _, value = arg.partition("=")
        self.env[name] = value
    elif program not in PROGRAMS:
      raise ValueError(f"{program}: not a program the pages' commands run (tests/test_docs.py PROGRAMS)")

  def jdl(self, args):
    cwd = os.getcwd()
    os.chdir(self.where)
    try:
      missing = cli.check_command(args, missing_paths_ok=True)
    finally:
      os.chdir(cwd)
    for item in missing:
      if item.startswith("benchmarks/results/") and (ROOT / item).exists():  # a recorded result of the repository
        continue
      if not (item.startswith("runs/") or "'runs/" in item or any(f in item for f in READER_FILES)):
        raise FileNotFoundError(f"{item}: neither under runs/ (written by an earlier command), a recorded result "
                                "of benchmarks/results/ nor one of the reader's own files (tests/test_docs.py "
                                "READER_FILES)")


# Runs a script or module with the arguments given, stopping right after its argparse parser accepted them.
_PARSE_ONLY = """
import argparse, runpy, sys
class Parsed(BaseException):
  pass
parse = argparse.ArgumentParser.parse_args
def parse_args(self, args=None, namespace=None):
  parse(self, args, namespace)
  raise Parsed
argparse.ArgumentParser.parse_args = parse_args
module, target, args = sys.argv[1] == "-m", sys.argv[2], sys.argv[3:]
sys.argv = [target, *args]
try:
  runpy.run_module(target, run_name="__main__", alter_sys=True) if module else runpy.run_path(target, run_name="__main__")
except Parsed:
  sys.exit(0)
sys.exit(f"{target}: ran to the end without parsing its arguments with argparse")
"""


def check_python_arguments(args):
  """``python SCRIPT ARGS`` or ``python -m MODULE ARGS`` (from the repository root): its argparse parser accepts ARGS."""
  if args[:1] == ["-m"] and len(args) > 1:
    module, target, rest = True, args[1], args[2:]
    if importlib.util.find_spec(target) is None:
      raise ValueError(f"python -m {target}: no such module")
  elif args and not args[0].startswith("-"):
    module, target, rest = False, args[0], args[1:]
    if not (ROOT / target).is_file():
      raise ValueError(f"python {target}: no such file in the repository")
  else:
    raise ValueError(f"python {' '.join(args)}: expected a script or -m MODULE")
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  out = subprocess.run([sys.executable, "-c", _PARSE_ONLY, "-m" if module else "-f", target, *rest], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300, check=False)
  if out.returncode:
    raise ValueError(f"python {' '.join(args)}: {(out.stderr.strip().splitlines() or ['exit status %d' % out.returncode])[-1]}")


def check_page_commands(text, where):
  """Every command of a page's shell blocks, in order; returns the failures as ``line N: command: error``."""
  checker, failures = ShellChecker(where), []
  for first, language, body in shell_blocks(text):
    for offset, line in commands(language, body):
      try:
        checker.line(line)
      except (ValueError, TypeError, KeyError, ImportError, OSError) as e:
        failures.append(f"line {first + offset}: {line}\n    {type(e).__name__}: {e}")
  return failures


PAGE_FILE = re.compile(r"^# ([\w./-]+\.py)\n")


def write_page_files(text, where):
  """The page's Python blocks headed ``# NAME.py`` (my_experiment.py, my_parts.py, ...), written as files."""
  for code in BLOCK.findall(text):
    m = PAGE_FILE.match(code)
    if m:
      (where / m.group(1)).parent.mkdir(parents=True, exist_ok=True)
      (where / m.group(1)).write_text(code)


SHELL_PAGES = [p for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))] if shell_blocks(p.read_text())]


@pytest.mark.parametrize("page", SHELL_PAGES, ids=lambda p: p.name)
def test_the_shell_commands_of_a_page_work(page, tmp_path):
  text = page.read_text()
  write_page_files(text, tmp_path)
  failures = check_page_commands(text, tmp_path)
  assert not failures, f"{page.relative_to(ROOT)}:\n" + "\n".join(failures)


def test_the_command_checker_fails_a_broken_command(tmp_path):
  """The checks can fail: each broken command below is caught, and its working twin passes."""
  (tmp_path / "my_experiment.py").write_text("from jdl.config import base_config\n\ndef get_config():\n"
                                            "  return base_config()\n")
  broken = {
      "jdl trian mlp_fashion_mnist": "invalid choice: 'trian'",
      "jdl train no_such_experiment": "unknown experiment 'no_such_experiment'",
      "jdl train mlp_fashion_mnist --config.epoch=3": "no field 'epoch'",
      "jdl train mlp_fashion_mnist --config.optimizer.name=adamm": "adamm",
      "jdl train mlp_fashion_mnist --epochs 3": "unrecognised argument '--epochs'",
      "jdl train no_such_file.py": "neither under runs/",
      "jdl attack runs/cnn --eps 0.1 --bogus": "unrecognised arguments: --bogus",
      "jdl attack runs/cnn --eps 0.1,x": "--eps",
      "jdl summary resnet18 --input-shape 32,abc": "--input-shape",
      "jdl tune mlp_fashion_mnist --space learning_rate --trials 3 --sampler tpee": "--sampler",
      "jdl bench run --suite no_such_suite --out runs/b": "unknown suite",
      "jdl bench run --suite smoke --out runs/b --optimizers adamm": "unknown optimizer(s) adamm",
      "jdl bench frobnicate": "invalid choice: 'frobnicate'",
      "jdl lesson 99": "no lesson matches",
      "jdl ensemble runs/a runs/b [--split test]": "[--split",
      "jdl list experiments | models": "models: not a program",
      "make no_such_target": "no target no_such_target",
      "python benchmarks/recipes.py --no-such-flag": "unrecognized arguments: --no-such-flag",
      "python benchmarks/no_such_script.py": "no such file",
      "python -m jdl.no_such_module": "no such module",
      "pip install 'jdl[no_such_extra]'": "no extra",
      "frobnicate --now": "not a program",
      "jdl train mlp_fashion_mnist $UNSET": "$UNSET",
  }
  for line, expected in broken.items():
    failures = check_page_commands(f"```sh\n{line}\n```\n", tmp_path)
    assert len(failures) == 1 and expected in failures[0], (line, failures)
  working = """```sh
jdl train mlp_fashion_mnist --config.optimizer.name=adam --config.epochs=3   # a comment
jdl train my_experiment.py --workdir runs/mine && jdl list models
C="--config.data.train_split=train[:3000] --config.epochs=2"
XLA_FLAGS=--xla_force_host_platform_device_count=8 jdl train mlp_fashion_mnist $C \\
    --config.strategy=data_parallel
for s in 0 1; do jdl train mlp_fashion_mnist --workdir runs/m/seed$s --config.seed=$s; done
jdl ensemble runs/m/seed0 runs/m/seed1 --split test
make docs
python benchmarks/recipes.py --table
pip install 'jdl[tune]'
```
```console
$ jdl list experiments
mlp_fashion_mnist
```
"""
  assert check_page_commands(working, tmp_path) == []
  # An unlabelled block of commands is checked too; one of output is not.
  assert len(check_page_commands("```\njdl trian\n```\n```\njdl/  the library\n```\n", tmp_path)) == 1


# --------------------------------------------------------------------------- #
# Measured figures: each generated block is what its script renders from benchmarks/results/.
# --------------------------------------------------------------------------- #

# The scripts that write a block of the pages with --docs (render_docs() → {(page, block): text}).
FIGURE_SCRIPTS = ("parallel_equivalence", "precision", "readme_performance", "bench_docs")


def _benchmark_script(name):
  spec = importlib.util.spec_from_file_location(f"docs_benchmark_{name}", ROOT / "benchmarks" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("name", FIGURE_SCRIPTS)
def test_the_measured_figures_of_a_page_are_its_result_files(name):
  script = _benchmark_script(name)
  blocks = script.render_docs()
  assert blocks
  for (page, block), text in blocks.items():
    assert script._doc_blocks.read(page, block) == text, (  # pylint: disable=protected-access
        f"{page}: the {block} block differs from {name}.py's rendering of benchmarks/results/; "
        f"run python benchmarks/{name}.py --table --docs (or --docs) instead of editing it")


def test_the_recipes_table_of_results_md_is_its_result_file():
  import json  # pylint: disable=g-import-not-at-top

  recipes = _benchmark_script("recipes")
  results = json.loads((ROOT / "benchmarks/results/recipes_cpu.json").read_text())
  doc_blocks = _benchmark_script("_doc_blocks")
  assert doc_blocks.read("docs/results.md", "recipes") == recipes.table(results)


def test_a_figure_edited_by_hand_is_caught(tmp_path, monkeypatch):
  doc_blocks = _benchmark_script("_doc_blocks")
  monkeypatch.setattr(doc_blocks, "ROOT", tmp_path)
  (tmp_path / "page.md").write_text("text\n<!-- figures:begin (python x.py --docs) -->\nold 1.0\n<!-- figures:end -->\nend\n")
  assert doc_blocks.read("page.md", "figures") == "old 1.0\n"
  doc_blocks.replace("page.md", "figures", "new 2.0\n")
  assert (tmp_path / "page.md").read_text() == ("text\n<!-- figures:begin (python x.py --docs) -->\nnew 2.0\n"
                                                "<!-- figures:end -->\nend\n")
  with pytest.raises(ValueError, match="expected one"):
    doc_blocks.read("page.md", "other")


def test_check_command_checks_without_running(tmp_path, monkeypatch):
  """``jdl.cli.check_command``: strict about paths by default, lenient ones reported; nothing written."""
  monkeypatch.chdir(tmp_path)
  assert cli.check_command(["train", "mlp_fashion_mnist", "--config.epochs=2", "--workdir", "runs/a"]) == []
  assert cli.check_command(["train", "mlp_fashion_mnist", "--workdir", "runs/a", "--resume"]) == []
  assert not (tmp_path / "runs").exists()
  with pytest.raises(FileNotFoundError, match="runs/cnn"):
    cli.check_command(["attack", "runs/cnn", "--eps", "0.1"])
  with pytest.raises(FileNotFoundError, match="mine.py"):
    cli.check_command(["train", "mine.py"])
  assert cli.check_command(["attack", "runs/cnn", "--eps", "0.1"], missing_paths_ok=True) == ["runs/cnn"]
  missing = cli.check_command(["train", "mlp_fashion_mnist", "--config.init_from=w.pth"], missing_paths_ok=True)
  assert len(missing) == 1 and "w.pth" in missing[0]
  with pytest.raises(ValueError, match="--resume needs --workdir"):
    cli.check_command(["train", "mlp_fashion_mnist", "--resume"])
  with pytest.raises(ValueError, match="strategy"):
    cli.check_command(["train", "mlp_fashion_mnist", "--config.strategy=ddp"])
  with pytest.raises(ValueError, match="unrecognised arguments: extra"):
    cli.check_command(["list", "models", "extra"])
  assert cli.main(["list", "models", "extra"]) == 2  # as the command itself
  assert cli.check_command(["train", "--help"]) == []

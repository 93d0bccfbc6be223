"""Every Python code block of README.md and docs/*.md runs, page by page, as a reader would paste them.

The blocks of a page run in order in one namespace (a page reads as one session), in a fresh
directory where ``runs/cnn`` is a small trained `cnn_fashion_mnist` run (quantized and exported, as
the pages' shell commands leave it) and Fashion-MNIST is the tests' tiny copy.
"""

import pathlib
import re

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

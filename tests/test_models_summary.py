"""jdl.models.summary and the `jdl summary` entry point."""

import flax.linen as nn
import pytest

import jdl.models


def _row(text, path):
  """The table row whose first column is ``path``, split into columns."""
  for line in text.splitlines():
    cells = line.split()
    if cells and cells[0] == path:
      return cells
  raise AssertionError(f"no row {path!r} in:\n{text}")


def test_mlp_summary_exact():
  text = jdl.models.summary("mlp", (28, 28, 1), hidden=(16,))
  assert text.startswith("Model: mlp\n")
  assert _row(text, "(mlp)") == ["(mlp)", "MLP", "float32[1,10]", "12,730", "0"]
  assert _row(text, "Dense_0") == ["Dense_0", "Dense", "float32[1,16]", "12,560", "0"]
  assert _row(text, "Dense_1") == ["Dense_1", "Dense", "float32[1,10]", "170", "0"]
  assert "Input:  float32[1,28,28,1]\n" in text
  assert "Parameters: 12,730\n" in text
  assert "  float32:          50,920 B (49.73 KiB)\n" in text
  assert "  bfloat16/float16: 25,460 B (24.86 KiB)\n" in text
  # jdl.quantize's int8 model: 12,704 kernel bytes, float32 scales and biases for 26 channels, two activation scales
  assert "  int8:             12,920 B (12.62 KiB) (jdl quantize: int8 kernels, float32 scales and biases)\n" in text
  assert "Batch statistics (not parameters): 0; as float32: 0 B\n" in text


def test_resnet_summary_separates_batch_stats_and_limits_depth():
  text = jdl.models.summary("resnet18", (32, 32, 3), num_classes=10, stem="small", batch_size=2,
                            depth=1)
  assert _row(text, "(resnet18)")[2:] == ["float32[2,10]", "11,173,962", "9,600"]
  assert _row(text, "stem_bn") == ["stem_bn", "BatchNorm", "float32[2,32,32,64]", "128", "128"]
  assert _row(text, "layer4_0")[1:3] == ["BasicBlock", "float32[2,4,4,512]"]
  assert "layer4_0/conv1" not in text  # deeper than depth=1
  assert "Parameters: 11,173,962\n" in text
  assert "Batch statistics (not parameters): 9,600; as float32: 38,400 B (37.50 KiB)\n" in text
  full = jdl.models.summary("resnet18", (32, 32, 3), stem="small")
  assert _row(full, "layer2_0/downsample_conv") == [
      "layer2_0/downsample_conv", "Conv", "float32[1,16,16,128]", "8,192", "0"]


def test_summary_of_a_module_and_default_shape():
  class Tiny(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
      return nn.Dense(2)(x)

  text = jdl.models.summary(Tiny(), (3,))
  assert _row(text, "(Tiny)") == ["(Tiny)", "Tiny", "float32[1,2]", "8", "0"]
  with pytest.raises(ValueError, match=r"input_shape is required .* no registered default"):
    jdl.models.summary(Tiny())
  with pytest.raises(TypeError, match=r"options \['hidden'\] apply to model names only"):
    jdl.models.summary(Tiny(), (3,), hidden=3)
  assert "Input:  float32[1,40]" in jdl.models.summary("cnn1d")  # registered (40,)


def test_summary_bad_arguments():
  with pytest.raises(ValueError, match=r"unknown model 'nope'; known models: .*resnet18"):
    jdl.models.summary("nope", (3,))
  with pytest.raises(ValueError, match=r"input_shape must be a non-empty sequence of positive ints "
                                       r".*got \(0, 3\)"):
    jdl.models.summary("mlp", (0, 3))
  with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
    jdl.models.summary("mlp", (3,), batch_size=0)


def test_count_params():
  assert jdl.models.count_params("lenet5") == 61_706  # registered 32x32x1, 10 classes
  assert jdl.models.count_params("logreg", (4,), num_classes=3) == 15


def test_summary_main(capsys):
  code = jdl.models.summary_main(["mlp", "--input-shape", "4,2", "--num-classes", "3",
                                  "--option", "hidden=(5, 6)", "-o", "activation=tanh"])
  out = capsys.readouterr().out
  assert code == 0
  assert _row(out, "Dense_1") == ["Dense_1", "Dense", "float32[1,6]", "36", "0"]
  assert "Parameters: 102\n" in out  # 8*5+5 + 5*6+6 + 6*3+3
  assert "Input:  float32[1,4,2]" in out


def test_summary_main_options_parse_literals_and_strings(capsys):
  code = jdl.models.summary_main(["resnet18", "--input-shape", "32x32x3", "--option", "stem=small",
                                  "--option", "width=8", "--option", "zero_init_residual=true",
                                  "--depth", "0"])
  out = capsys.readouterr().out
  assert code == 0
  assert _row(out, "(resnet18)")[2] == "float32[1,10]"
  assert len([line for line in out.splitlines() if line.startswith("layer")]) == 0


def test_summary_main_errors(capsys):
  assert jdl.models.summary_main(["resnet19"]) == 2
  err = capsys.readouterr().err
  assert "jdl summary: error: create: unknown model 'resnet19'; known models:" in err
  assert "resnet18" in err
  assert jdl.models.summary_main(["mlp", "--input-shape", "a,b"]) == 2
  assert "expected comma-separated positive ints" in capsys.readouterr().err
  assert jdl.models.summary_main(["mlp", "--option", "hidden"]) == 2
  assert "expected key=value" in capsys.readouterr().err
  assert jdl.models.summary_main(["mlp", "--option", "depth=2"]) == 2
  assert "has no option(s) ['depth']" in capsys.readouterr().err
  assert jdl.models.summary_main([]) == 2
  assert "MODEL is required" in capsys.readouterr().err
  assert jdl.models.summary_main(["--list"]) == 0
  assert "resnet18\n" in capsys.readouterr().out


def test_jdl_summary_takes_help_and_list_before_a_model(capsys):
  from jdl import cli

  assert cli.main(["summary", "--list"]) == 0
  assert "resnet18" in capsys.readouterr().out.split()
  assert cli.main(["summary", "--help"]) == 0
  assert "--input-shape" in capsys.readouterr().out
  assert cli.main(["summary", "--input-shape", "28,28,1", "mlp"]) == 0
  assert "Parameters: 407,050" in capsys.readouterr().out

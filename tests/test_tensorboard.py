"""TensorBoard event files of jdl train, read back with TensorBoard's own reader."""

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from jdl import cli
from jdl.train import tensorboard

SMALL = ["--config.model.options.hidden=(8,)", "--config.data.batch_size=64", "--config.data.eval_batch_size=100",
         "--config.progress=false", "--config.checkpoint.every_seconds=0"]


def test_log_keys_become_grouped_tags():
  assert tensorboard.tag("train_loss") == "loss/train"
  assert tensorboard.tag("eval_f1:macro") == "f1:macro/eval"
  assert tensorboard.tag("test_accuracy") == "accuracy/test"
  assert tensorboard.tag("diag_grad_norm/Dense_0") == "diagnostics/grad_norm/Dense_0"
  assert tensorboard.tag("epoch_seconds") == "time/epoch_seconds"
  assert tensorboard.tag("epoch") is None and tensorboard.tag("step") is None


def _accumulator(run):
  acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
  acc.Reload()
  return acc


def test_a_run_writes_its_epochs_test_metrics_hparams_and_curves(tiny_data, tmp_path):
  run = tmp_path / "run"
  assert cli.main(["train", "mlp_fashion_mnist", "--workdir", str(run), *SMALL, "--config.epochs=2"]) == 0
  lines = [json.loads(t) for t in (run / "metrics.jsonl").read_text().splitlines()]
  summary = json.loads((run / "summary.json").read_text())
  scalars = tensorboard.read_scalars(run / "tensorboard")
  for key, name in (("train_loss", "loss/train"), ("eval_accuracy", "accuracy/eval"),
                    ("epoch_seconds", "time/epoch_seconds")):
    assert [s for s, _ in scalars[name]] == [1, 2]
    assert [v for _, v in scalars[name]] == pytest.approx([line[key] for line in lines], rel=1e-6)
  assert scalars["accuracy/test"] == [(2, pytest.approx(summary["test_accuracy"], rel=1e-6))]
  assert scalars["hparam/test_loss"] == [(2, pytest.approx(summary["test_loss"], rel=1e-6))]
  acc = _accumulator(run)
  assert acc.Tags()["images"] == ["curves"]
  start = plugin_data_pb2.HParamsPluginData.FromString(
      acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]).session_start_info
  assert start.hparams["optimizer.name"].string_value == "rmsprop"
  assert start.hparams["data.batch_size"].number_value == 64
  assert start.hparams["model.options.hidden"].string_value == "[8]"


def test_invocations_within_one_second_keep_their_own_event_files(tmp_path):
  # tensorboardX names a file by the second: a resume started within the same second once erased the first file.
  for initial_epoch, epochs in ((0, (1, 2)), (2, (3,)), (1, (2, 3))):
    writer = tensorboard.Writer(tmp_path, initial_epoch=initial_epoch)
    for epoch in epochs:
      writer.epoch({"epoch": epoch, "train_loss": 10.0 * initial_epoch + epoch})
    writer.close()
  assert len(list((tmp_path / "tensorboard").iterdir())) == 3
  # The last invocation redid epochs 2 and 3: its values replace the earlier ones.
  assert tensorboard.read_scalars(tmp_path / "tensorboard")["loss/train"] == [(1, 1.0), (2, 12.0), (3, 13.0)]


def test_a_resumed_run_logs_each_epoch_once(tiny_data, tmp_path):
  run = tmp_path / "run"
  assert cli.main(["train", "mlp_fashion_mnist", "--workdir", str(run), *SMALL, "--config.epochs=1"]) == 0
  assert cli.main(["train", "mlp_fashion_mnist", "--workdir", str(run), *SMALL, "--config.epochs=3",
                   "--resume"]) == 0
  scalars = tensorboard.read_scalars(run / "tensorboard")
  assert [s for s, _ in scalars["loss/train"]] == [1, 2, 3]
  lines = [json.loads(t) for t in (run / "metrics.jsonl").read_text().splitlines()]
  assert [v for _, v in scalars["loss/train"]] == pytest.approx([line["train_loss"] for line in lines], rel=1e-6)


def test_tensorboard_false_writes_no_events(tiny_data, tmp_path):
  run = tmp_path / "run"
  assert cli.main(["train", "mlp_fashion_mnist", "--workdir", str(run), *SMALL, "--config.epochs=1",
                   "--config.tensorboard=false"]) == 0
  assert not (run / "tensorboard").exists()


# --- jdl compare ---------------------------------------------------------------------------------------------------


@pytest.fixture
def two_runs(tiny_data, tmp_path):
  for name, extra in (("wide", []), ("narrow", ["--config.model.options.hidden=(4,)"])):
    assert cli.main(["train", "mlp_fashion_mnist", "--workdir", str(tmp_path / name), *SMALL, "--config.epochs=2",
                     *extra]) == 0
  return tmp_path / "wide", tmp_path / "narrow"


def test_compare_tables_the_differing_settings_and_the_best_epochs(two_runs, tmp_path, capsys):
  wide, narrow = two_runs
  assert cli.main(["compare", str(wide), str(narrow), "--metric", "eval_loss", "--out", str(tmp_path / "cmp")]) == 0
  printed = capsys.readouterr().out
  table = (tmp_path / "cmp" / "compare.md").read_text()
  assert table in printed
  head, _, *rows = table.strip().splitlines()
  assert head.startswith("| run | model.options.hidden | best_eval_loss | best_epoch |")
  lines = {name: [json.loads(t) for t in (run / "metrics.jsonl").read_text().splitlines()]
           for name, run in (("wide", wide), ("narrow", narrow))}
  for row in rows:
    cells = [c.strip() for c in row.strip("|").split("|")]
    best = min(lines[cells[0]], key=lambda line: line["eval_loss"])
    assert cells[1] == ("(8)" if cells[0] == "wide" else "(4)")
    assert float(cells[2]) == pytest.approx(best["eval_loss"], rel=1e-3) and int(cells[3]) == best["epoch"]
  assert (tmp_path / "cmp" / "compare.png").stat().st_size > 1000


def test_compare_names_what_is_wrong(two_runs, tmp_path, capsys):
  wide, _ = two_runs
  assert cli.main(["compare", str(wide), "--metric", "eval_f1", "--out", str(tmp_path)]) == 2
  assert "metric: " in (err := capsys.readouterr().err) and "logged no 'eval_f1'; it logged " in err
  assert "eval_accuracy" in err
  assert cli.main(["compare", str(wide), str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 2
  assert "is not a directory" in capsys.readouterr().err

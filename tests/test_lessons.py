"""The course's lessons (lessons/NN_*.py) run at their reduced size, and each one's claim holds."""

import importlib.util
import math
import pathlib

import jax
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "lessons").glob("[0-9][0-9]_*.py"))


def _run(number, out):
  path = next(p for p in LESSONS if p.name.startswith(f"{number:02d}_"))
  spec = importlib.util.spec_from_file_location(f"lesson_{number:02d}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  with jax.numpy_rank_promotion("allow"):  # lessons broadcast as users do (b1 + x @ W1); jdl's own code is strict
    result = module.run(quick=True, out=str(out))
  for key in ("figure", "roc_figure"):
    if key in result:
      assert pathlib.Path(result[key]).is_file()
  return result


def test_every_lesson_has_a_number_a_docstring_and_a_run_function():
  assert [int(p.name[:2]) for p in LESSONS] == list(range(1, len(LESSONS) + 1))
  for path in LESSONS:
    text = path.read_text()
    assert text.startswith('"""') and "def run(quick: bool = False" in text and "--quick" in text, path


def test_01_stacked_linear_layers_are_one_matrix(tmp_path):
  r = _run(1, tmp_path)
  assert r["collapse_error"] < 1e-4 and r["relu_residual"] > 0.05


def test_02_the_hand_derived_gradient_is_jaxs(tmp_path):
  r = _run(2, tmp_path)
  assert r["gradient_error"] < 1e-5 and r["last_loss"] < 0.5 * r["first_loss"]
  assert r["loss_with_bias"] < 1e-3 < 1.0 < r["loss_without_bias"]


def test_03_cross_entropy_pushes_harder_on_a_wrong_prediction(tmp_path):
  r = _run(3, tmp_path)
  assert r["bce"] == pytest.approx(math.log(10), rel=1e-5) and r["mse"] == pytest.approx(0.81, rel=1e-5)
  assert abs(r["bce_gradient"]) > 5 * abs(r["mse_gradient"]) and r["ce_vs_nll"] < 1e-6


def test_04_a_too_high_learning_rate_diverges(tmp_path, tiny_data):
  r = _run(4, tmp_path)
  assert r["diverged"] == {"too low (1e-4)": False, "right (0.05)": False, "too high (50)": True}
  assert r["lr_final_loss"]["right (0.05)"] < r["lr_final_loss"]["too low (1e-4)"]
  assert r["bytes"] == {"float32": 4 * 2410, "bfloat16": 2 * 2410, "int8": 2410}


def test_05_adam_by_hand_and_momentum_beats_sgd(tmp_path):
  r = _run(5, tmp_path)
  assert r["adam_by_hand_error"] < 1e-5
  assert r["quadratic_loss"]["momentum"] < r["quadratic_loss"]["sgd"]


def test_06_sigmoid_gradients_vanish_he_and_batchnorm_keep_them(tmp_path):
  r = _run(6, tmp_path)
  ratio = r["first_over_last_gradient"]
  assert ratio["sigmoid, N(0, 0.01²)"] < 1e-4 < 0.05 < ratio["ReLU, He"] < 20
  assert r["variance_after"]["ReLU, He (2/n)"] > 0.1 > 1e-10 > r["variance_after"]["ReLU, N(0, 0.01²) (too small)"]
  assert r["dead_fraction_bias_-3"] == 1.0


def test_07_l1_gives_exact_zeros_and_l2_does_not(tmp_path):
  r = _run(7, tmp_path)
  zeros = r["exact_zeros"]
  assert zeros["L1, proximal (1e-2)"] > 0.1 and zeros["L2 (1e-2)"] == 0.0 and zeros["none"] == 0.0
  assert r["weight_decay_error"] < 1e-6 and r["early_stopping_best_epoch"] < r["epochs_run"]


def test_08_augmentation_at_strength_zero_is_the_identity(tmp_path, tiny_data):
  r = _run(8, tmp_path)
  assert r["augment_identity_error"] == 0.0 and r["test_accuracy"] == {}  # --quick leaves out the trainings
  noise = list(r["batch_mean_noise"].values())
  assert noise == sorted(noise, reverse=True)


def test_09_the_too_large_network_overfits_and_the_too_small_one_underfits(tmp_path):
  r = _run(9, tmp_path)
  small, right, large = (r[k] for k in ("too small (2 units)", "right-sized (64)", "too large (1024 x 2)"))
  assert small["final_train_loss"] > right["final_train_loss"] > large["final_train_loss"]
  assert large["final_validation_loss"] > large["best_validation_loss"]


def test_10_the_slides_confusion_matrix(tmp_path):
  r = _run(10, tmp_path)
  assert r["per_class"]["dog"] == {"TP": 5, "FP": 2, "FN": 1, "TN": 7, "precision": 5 / 7, "recall": 5 / 6}
  assert r["prf_vs_sklearn"] < 1e-9 and r["metrics_vs_reference"] < 1e-6


def test_11_the_first_network_learns_with_jdl_and_from_scratch(tmp_path, tiny_data):
  r = _run(11, tmp_path)
  assert r["jdl_test_accuracy"] > 0.5 and r["scratch_test_accuracy"] > 0.5


def test_12_the_milestones_parameters(tmp_path, tiny_data):
  r = _run(12, tmp_path)
  assert r["milestones"]["LeNet-5"]["parameters"] == 61_706
  assert r["milestones"]["ResNet-18"]["parameters"] == 11_173_962
  assert r["test_accuracy"]["LeNet-5"] > 0.3


def test_13_an_adversarial_example_fools_the_network_within_its_box(tmp_path, tiny_data):
  r = _run(13, tmp_path)
  assert r["adversarial_accuracy"] < r["clean_accuracy"] and r["largest_pixel_change"] <= 0.1 + 1e-6
  assert r["ideal_probability"] > 0.5


def test_14_accumulated_gradients_are_the_big_batch(tmp_path):
  r = _run(14, tmp_path)
  assert r["accumulation_error"] < 1e-6 and math.isinf(r["float16_of_70000"]) and r["float16_of_1e-8"] == 0.0
  assert math.isfinite(r["bfloat16_of_70000"])


def test_15_every_strategy_computes_what_one_device_does(tmp_path):
  r = _run(15, tmp_path)
  assert r["strategy_spread"] < 1e-4 and all(v > 0 for v in r["gflops"]["float32"].values())

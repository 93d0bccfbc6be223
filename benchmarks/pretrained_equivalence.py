"""Full-size pretrained networks loaded into jdl give their source framework's logits.

The ImageNet networks at their real size (224×224×3 inputs, 1000 classes), with
random weights and BatchNorm statistics away from their defaults, no download:
torchvision-layout ResNet-18, MobileNetV2 and VGG-16 saved with `torch.save`
(the modules of tests/_torchvision_layouts.py), Keras' VGG16, ResNet50 and
MobileNetV2 (`keras.applications`, `weights=None`) saved as legacy `.h5`
files, the format of the ImageNet downloads. Each is loaded with
`jdl.models.from_torchvision` / `from_keras`, and the logits of both on the
same 4 images are compared; the parameter counts are checked against the
published ones.

    python benchmarks/pretrained_equivalence.py

Writes benchmarks/results/pretrained_equivalence_cpu.{json,md}.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "tests"))
PUBLISHED = {"resnet18": 11_689_512, "mobilenet_v2": 3_504_872, "vgg16": 138_357_544, "resnet50": 25_636_712}


def _compare(name, source, jdl_logits, reference, params):
  diff = np.abs(np.asarray(jdl_logits) - reference)
  row = {"model": name, "source": source, "parameters": int(params), "max_abs_diff": float(diff.max()),
         "max_rel_diff": float(diff.max() / np.abs(reference).max()),
         "same_top1": bool((np.asarray(jdl_logits).argmax(1) == reference.argmax(1)).all())}
  print(json.dumps(row), flush=True)
  return row


def _jdl_logits(module, variables, x):
  import jax  # pylint: disable=g-import-not-at-top

  return np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, x))


def torch_rows(x, tmp):
  import torch  # pylint: disable=g-import-not-at-top

  import _torchvision_layouts as layouts  # pylint: disable=g-import-not-at-top
  import jdl.models  # pylint: disable=g-import-not-at-top
  from jdl.nn.preprocessing import preprocess_images  # pylint: disable=g-import-not-at-top

  rows = []
  for name, build in (("resnet18", layouts.resnet18), ("mobilenet_v2", layouts.MobileNetV2), ("vgg16", layouts.VGG)):
    torch.manual_seed(0)
    model = layouts.randomize_batch_norm(build())
    path = tmp / f"{name}.pth"
    torch.save(model.state_dict(), path)
    module, variables = jdl.models.from_torchvision(name, path)
    xt = torch.from_numpy(np.asarray(preprocess_images(x, "torchvision")).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
      reference = model(xt).numpy()
    params = sum(p.numel() for p in model.parameters())
    rows.append(_compare(name, "torchvision layout (.pth)", _jdl_logits(module, variables, x), reference, params))
  return rows


def keras_rows(x, tmp):
  os.environ.setdefault("KERAS_BACKEND", "jax")
  import h5py  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import keras  # pylint: disable=g-import-not-at-top
  from keras.src.legacy.saving import legacy_h5_format  # pylint: disable=g-import-not-at-top

  import jdl.models  # pylint: disable=g-import-not-at-top

  rows = []
  rng = np.random.default_rng(0)
  for name, app, module_name in (("vgg16", "VGG16", "vgg16"), ("resnet50", "ResNet50", "resnet50"),
                                 ("mobilenet_v2", "MobileNetV2", "mobilenet_v2")):
    keras.utils.set_random_seed(0)
    with jax.numpy_rank_promotion("allow"):
      model = getattr(keras.applications, app)(weights=None, classifier_activation=None)
      for layer in model.layers:
        if layer.__class__.__name__ == "BatchNormalization":
          n = layer.gamma.shape[0]
          for variable, values in ((layer.gamma, rng.uniform(0.5, 1.5, n)), (layer.beta, rng.normal(0, 0.1, n)),
                                   (layer.moving_mean, rng.normal(0, 0.1, n)),
                                   (layer.moving_variance, rng.uniform(0.5, 1.5, n))):
            variable.assign(values.astype(np.float32))
      path = tmp / f"keras_{name}.h5"
      with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
      preprocess = getattr(keras.applications, module_name).preprocess_input
      reference = np.asarray(model.predict(preprocess(x * 255.0), verbose=0))
    module, variables = jdl.models.from_keras(name, path)
    rows.append(_compare(name, "keras.applications (legacy .h5)", _jdl_logits(module, variables, x), reference,
                         model.count_params()))
  return rows


def main() -> int:
  x = np.random.default_rng(1).uniform(0, 1, (4, 224, 224, 3)).astype(np.float32)
  start = time.perf_counter()
  with tempfile.TemporaryDirectory() as tmp:
    rows = torch_rows(x, pathlib.Path(tmp)) + keras_rows(x, pathlib.Path(tmp))
  result = {"machine": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()},
            "date": time.strftime("%Y-%m-%d"), "seconds": time.perf_counter() - start, "published": PUBLISHED,
            "rows": rows}
  RESULTS.mkdir(parents=True, exist_ok=True)
  (RESULTS / "pretrained_equivalence_cpu.json").write_text(json.dumps(result, indent=1) + "\n")
  lines = ["| model | source | parameters | max abs. difference of logits | relative to the largest logit | same top-1 |",
           "|---|---|---:|---:|---:|---|"]
  for r in rows:
    lines.append(f"| `{r['model']}` | {r['source']} | {r['parameters']:,} | {r['max_abs_diff']:.2e} | "
                 f"{r['max_rel_diff']:.2e} | {'yes' if r['same_top1'] else 'no'} |")
  text = f"""# Pretrained weights: jdl against the source frameworks (CPU)

`python benchmarks/pretrained_equivalence.py`

Machine: {result['machine']}, {result['date']}. Full-size networks (224×224×3, 1000 classes) with random
weights and BatchNorm statistics, saved by their framework, loaded with `jdl.models.from_torchvision` /
`from_keras`; logits of both on the same 4 random images (float32). Published parameter counts: ResNet-18
11,689,512, MobileNetV2 3,504,872, VGG-16 138,357,544 (torchvision); Keras' counts include BatchNorm's moving
statistics (its ResNet50's 25,636,712 also the convolutions' biases).

{chr(10).join(lines)}
"""
  (RESULTS / "pretrained_equivalence_cpu.md").write_text(text)
  print(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())

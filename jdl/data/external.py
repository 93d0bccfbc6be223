"""TFDS datasets jdl does not ship: an existing builder, or ``tfds:NAME``, read without TensorFlow.

    jdl.data.register("shapes", my_builder)            # any tfds.core.DatasetBuilder
    --config.data.name=tfds:cifar10                    # TFDS's own, prepared (downloaded) on first use
    --config.data.name='tfds:cats_vs_dogs?size=160'    # images of varying sizes: resized

The builder is prepared as array_record files (``download_and_prepare``; a
dataset that must be downloaded needs the network once), then every split is
read back without TensorFlow: the stored ``tf.train.Example`` records are
parsed directly and images (PNG, JPEG) decoded with Pillow. The inputs are the
builder's supervised input (or its one image feature), the labels its
supervised target (or its one ``ClassLabel``), with the class names. Images
of varying sizes need an ``image_size`` (center crop and resize, as image
folders). Then it is a dataset like any other: ``jdl.data.load``, splits such as
``train[:90%]``, ``jdl train``.
"""

from __future__ import annotations

import io
import os
import urllib.parse
from collections.abc import Sequence
from typing import Any

import numpy as np

TFDS_PREFIX = "tfds:"


def is_builder(obj: Any) -> bool:
  """Whether ``obj`` is a TFDS ``DatasetBuilder`` (checked without importing TFDS when it cannot be one)."""
  return type(obj).__module__.split(".")[0] != "numpy" and hasattr(obj, "as_data_source") and hasattr(obj, "info")


def _keys(builder: Any, where: str) -> tuple[str, str]:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  features = builder.info.features
  supervised = builder.info.supervised_keys
  if supervised and isinstance(supervised[0], str) and isinstance(supervised[1], str):
    return supervised[0], supervised[1]
  images = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
  labels = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
  if len(images) == 1 and len(labels) == 1:
    return images[0], labels[0]
  raise ValueError(f"{where}: cannot tell the inputs and the labels among the builder's features "
                   f"{', '.join(features.keys())}; a builder with supervised_keys, or one image and one ClassLabel "
                   "feature, is read directly")


def _decode_image(data: bytes, size: tuple[int, int] | None, channels: int, where: str) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top

  from jdl.data import folder  # pylint: disable=g-import-not-at-top

  if size is not None:  # center crop to the aspect ratio and resize, as image folders do
    array = folder.decode(io.BytesIO(data), folder.FolderOptions(image_size=size, channels=channels))
    if array is None:
      raise ValueError(f"{where}: an image Pillow cannot decode")
    return array
  with Image.open(io.BytesIO(data)) as image:
    array = np.asarray(image.convert("RGB" if channels == 3 else "L"), dtype=np.uint8)
  return array[..., None] if array.ndim == 2 else array


def read_split(builder: Any, split: str, *, image_size: tuple[int, int] | None = None,
               where: str = "jdl.data.register") -> dict[str, np.ndarray]:
  """A prepared builder's split as ``{input key: array, "label": int array}``, parsed without TensorFlow."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.proto import tf_example_pb2  # pylint: disable=g-import-not-at-top

  input_key, label_key = _keys(builder, where)
  feature = builder.info.features[input_key]
  raw = builder.as_data_source(split=split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
  inputs, labels = [], []
  image = isinstance(feature, tfds.features.Image)
  channels = (feature.shape[-1] or 3) if image else 0
  shape = tuple(feature.shape)
  dtype = np.dtype(feature.np_dtype)
  for i in range(len(raw)):
    example = tf_example_pb2.Example.FromString(raw[i]).features.feature
    labels.append(int(example[label_key].int64_list.value[0]))
    value = example[input_key]
    if image:
      inputs.append(_decode_image(value.bytes_list.value[0], image_size, channels, where))
    elif value.bytes_list.value:
      inputs.append(np.frombuffer(value.bytes_list.value[0], dtype=dtype).reshape(shape))
    elif value.float_list.value:
      inputs.append(np.asarray(value.float_list.value, dtype=dtype).reshape(shape))
    else:
      inputs.append(np.asarray(value.int64_list.value, dtype=dtype).reshape(shape))
  shapes = {a.shape for a in inputs}
  if len(shapes) > 1:
    raise ValueError(f"{where}: the {split!r} split's {input_key!r} have several shapes ({sorted(shapes)[:3]} …); "
                     "give image_size= (or ?size=N after tfds:NAME) to resize them to one")
  key = "image" if image else input_key
  return {key: np.stack(inputs) if inputs else np.zeros((0, *shape), dtype), "label": np.asarray(labels, np.int64)}


def builder_splits(builder: Any, *, image_size: Any = None, where: str) -> tuple[dict[str, Any], tuple[str, ...] | None]:
  """Every split of ``builder`` (prepared first if needed) and its class names."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  from jdl.data import core  # pylint: disable=g-import-not-at-top

  size = (image_size, image_size) if isinstance(image_size, int) else (tuple(image_size) if image_size else None)
  if not builder.info.splits:
    with core._quiet_tfds(), core._preserve_global_rngs():  # pylint: disable=protected-access
      builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False),
                                   file_format="array_record")
  _, label_key = _keys(builder, where)
  label = builder.info.features[label_key]
  names = tuple(label.names) if isinstance(label, tfds.features.ClassLabel) and label.names else None
  splits = {split: read_split(builder, split, image_size=size, where=where) for split in builder.info.splits}
  return splits, names


def ensure_tfds(name: str) -> None:
  """Registers ``tfds:NAME[/CONFIG][?size=N]`` the first time it is named: TFDS's builder, prepared as array_record."""
  from jdl.data import catalog, sources, user  # pylint: disable=g-import-not-at-top

  if name in catalog.CATALOG:
    return
  body = name[len(TFDS_PREFIX):]
  tfds_name, _, query = body.partition("?")
  options = urllib.parse.parse_qs(query, strict_parsing=bool(query))
  unknown = sorted(set(options) - {"size"})
  if unknown or not tfds_name:
    raise ValueError(f"data.name={name!r}: expected tfds:NAME[/CONFIG][?size=N]; unknown options {unknown}")
  size = None
  if "size" in options:
    try:
      parts = [int(p) for p in options["size"][-1].replace("x", ",").split(",")]
    except ValueError:
      raise ValueError(f"data.name={name!r}: size must be N or HxW") from None
    size = (parts[0], parts[0]) if len(parts) == 1 else tuple(parts)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  try:
    builder = tfds.builder(tfds_name, data_dir=os.fspath(sources.tfds_data_dir()), file_format="array_record")
  except Exception as e:  # pylint: disable=broad-except  # TFDS raises DatasetNotFoundError and others
    raise ValueError(f"data.name={name!r}: TFDS has no dataset {tfds_name!r} ({type(e).__name__}: "
                     f"{str(e).splitlines()[0][:200]})") from None
  user.register(name, builder, image_size=size, description=f"TFDS's {tfds_name}")


def check_image_size(image_size: Any, where: str) -> Sequence[int] | int | None:
  if image_size is None:
    return None
  ok = (isinstance(image_size, int) and not isinstance(image_size, bool) and image_size > 0) or (
      isinstance(image_size, (tuple, list)) and len(image_size) == 2
      and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in image_size))
  if not ok:
    raise ValueError(f"{where}: image_size must be a positive int or (height, width), got {image_size!r}")
  return image_size

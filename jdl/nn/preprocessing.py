"""The input normalisations pretrained ImageNet networks expect, by name.

jdl's steps hand a model its images as float32 in [0, 1] (``uint8 / 255``), RGB,
NHWC. A network trained elsewhere saw its inputs normalised its own way, and
its weights are only right on inputs normalised the same way:

* ``"torchvision"`` (also Keras' ``"torch"`` mode): ``(x - mean) / std`` with
  ImageNet's channel means ``(0.485, 0.456, 0.406)`` and standard deviations
  ``(0.229, 0.224, 0.225)``;
* ``"caffe"`` (Keras' VGG16, VGG19, ResNet50, ResNet101): pixel values in
  [0, 255], channels reversed to BGR, minus the BGR means ``(103.939, 116.779,
  123.68)``, no scaling;
* ``"tf"`` (Keras' MobileNetV2, InceptionV3, Xception): ``2x - 1``, in [-1, 1];
* ``"none"``: unchanged.

The zoo's ImageNet models take one as their ``preprocess`` option, so a loaded
network normalises its own inputs (``jdl.models.from_torchvision`` and
``from_keras`` set it).

>>> import numpy as np
>>> x = np.full((1, 1, 1, 3), 0.5, np.float32)
>>> np.round(preprocess_images(x, "tf"), 3).tolist()
[[[[0.0, 0.0, 0.0]]]]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
PREPROCESSING = ("torchvision", "caffe", "tf", "none")


def check_preprocess(mode: str | None, where: str = "preprocess") -> str:
  """``mode`` if it names a normalisation (None means ``"none"``); else a ``ValueError`` listing them."""
  if mode is None:
    return "none"
  if mode not in PREPROCESSING:
    raise ValueError(f"{where}: expected one of {', '.join(PREPROCESSING)}, got {mode!r}")
  return mode


def preprocess_images(x: jax.Array | np.ndarray, mode: str | None) -> jax.Array:
  """Normalises RGB images in [0, 1] (NHWC) as the network trained with ``mode`` expects.

  Args:
    x: images ``(..., height, width, 3)`` in [0, 1] (``"none"`` takes any shape).
    mode: one of ``PREPROCESSING`` (None: unchanged).

  Returns:
    float32 images of the same shape.
  """
  mode = check_preprocess(mode)
  x = jnp.asarray(x, jnp.float32)
  if mode == "none":
    return x
  if x.shape[-1] != 3:
    raise ValueError(f"preprocess {mode!r}: expected RGB images (3 channels on the last axis), got shape "
                     f"{tuple(x.shape)}")
  per_channel = lambda values: jnp.asarray(values, jnp.float32).reshape((1,) * (x.ndim - 1) + (3,))  # noqa: E731
  if mode == "torchvision":
    return (x - per_channel(IMAGENET_MEAN)) / per_channel(IMAGENET_STD)
  if mode == "caffe":
    return x[..., ::-1] * 255.0 - per_channel(CAFFE_BGR_MEAN)
  return x * 2.0 - 1.0  # "tf"

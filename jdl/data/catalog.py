"""Static facts about jdl's datasets: ``DatasetInfo`` and the catalog of known names.

Nothing here reads data; ``jdl.data.info(name)`` answers from this table. The split
sizes are those of the canonical data (a dataset prepared from other IDX files, with
``JDL_DATA_VERIFY=0``, may have other sizes; ``load`` returns what was prepared).
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from jdl.registry import Registry

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGITS = tuple(str(i) for i in range(10))


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a model needs to know about a dataset.

  Attributes:
    name: the name ``jdl.data.load`` takes.
    input_key: the key of the inputs in ``load``'s dict: ``"image"`` (uint8 images)
      or ``"inputs"`` (float32 feature vectors) for jdl's datasets; a registered
      dataset names its own.
    input_shape: the shape of one input, e.g. ``(28, 28, 1)``.
    num_classes: the number of classes; None for regression.
    task: ``"classification"`` or ``"regression"``.
    splits: split name -> number of examples (canonical data).
    class_names: the classes' names in label order, where known.
    label_key: the key of the targets in ``load``'s dict (always ``"label"``).
    description: where the data comes from and how it is preprocessed.
  """

  name: str
  input_key: str
  input_shape: tuple[int, ...]
  num_classes: int | None
  task: Literal["classification", "regression"]
  splits: Mapping[str, int]
  class_names: tuple[str, ...] | None = None
  label_key: str = "label"
  description: str = ""

  def __post_init__(self) -> None:
    # A read-only copy, so that the frozen dataclass is immutable all the way down.
    object.__setattr__(self, "splits", types.MappingProxyType(dict(self.splits)))

  def __hash__(self) -> int:
    return hash((self.name, self.input_key, self.input_shape, self.num_classes, self.task, tuple(self.splits.items()), self.class_names))

  def __eq__(self, other: object) -> bool:
    if not isinstance(other, DatasetInfo):
      return NotImplemented
    return all(
        (getattr(self, f.name) if f.name != "splits" else dict(self.splits))
        == (getattr(other, f.name) if f.name != "splits" else dict(other.splits))
        for f in dataclasses.fields(self)
    )

  def __repr__(self) -> str:
    shown = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("description", "label_key")}
    shown["splits"] = dict(self.splits)
    return f"DatasetInfo({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

  @property
  def num_examples(self) -> int:
    """Examples over all splits."""
    return sum(self.splits.values())


@dataclasses.dataclass(frozen=True)
class TfdsLocation:
  """Where a TFDS-backed dataset is prepared: ``<tfds dir>/<builder>[/<config>]/<version>``."""

  builder: str
  config: str | None
  version: str

  def variant_dir(self, tfds_dir: Path) -> Path:
    """The directory of the prepared dataset under ``tfds_dir``."""
    base = tfds_dir / self.builder
    return (base / self.config if self.config else base) / self.version


# The builders in jdl.data.builders take their versions from here; bump a version
# whenever what a builder generates changes (the .npy cache is keyed by it).
IDX_VERSION = "1.1.0"
MNIST1D_VERSION = "1.0.0"
TFDS_LOCATIONS: dict[str, TfdsLocation] = {
    "fashion_mnist": TfdsLocation("jdl_idx_images", "fashion_mnist", IDX_VERSION),
    "mnist": TfdsLocation("jdl_idx_images", "mnist", IDX_VERSION),
    "mnist1d": TfdsLocation("jdl_mnist1d", None, MNIST1D_VERSION),
}

# How each dataset is served: "tfds" by a builder in jdl.data.builders (prepared
# once into array_record files, cached as .npy); "tabular" built in memory from
# scikit-learn's bundled data (jdl.data.tabular).
# "memory": registered from the user's code with jdl.data.register (arrays, or a function returning them).
BACKENDS: dict[str, str] = {}
CATALOG: Registry[DatasetInfo] = Registry("dataset", where="jdl.data.register", same=lambda old, new: old == new)


def _register(backend: str, info: DatasetInfo, *, overwrite: bool = False) -> None:
  CATALOG.register(info.name, info, overwrite=overwrite)
  BACKENDS[info.name] = backend


_TABULAR_NOTE = (
    "Bundled with scikit-learn (no download). Deterministic split: 80% train / 20% test{strat}, seed 0, "
    "both shuffled. 'inputs' are float32, standardized per feature with the train split's mean and standard "
    "deviation (constant features become 0)."
)

_register(
    "tfds",
    DatasetInfo(
        name="fashion_mnist",
        input_key="image",
        input_shape=(28, 28, 1),
        num_classes=10,
        task="classification",
        splits={"train": 60000, "test": 10000},
        class_names=FASHION_MNIST_CLASSES,
        description="Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017): 28x28 grayscale images of clothing, uint8, from the IDX files.",
    ),
)
_register(
    "tfds",
    DatasetInfo(
        name="mnist",
        input_key="image",
        input_shape=(28, 28, 1),
        num_classes=10,
        task="classification",
        splits={"train": 60000, "test": 10000},
        class_names=DIGITS,
        description="MNIST (LeCun, Cortes and Burges): 28x28 grayscale handwritten digits, uint8, from the IDX files.",
    ),
)
_register(
    "tfds",
    DatasetInfo(
        name="mnist1d",
        input_key="inputs",
        input_shape=(40,),
        num_classes=10,
        task="classification",
        splits={"train": 4000, "test": 1000},
        class_names=DIGITS,
        description=(
            "MNIST-1D (Greydanus, 2020): 1-D signals of length 40, generated procedurally by the mnist1d package "
            "with its default arguments and seed (no download); float32 'inputs', as the package normalizes them."
        ),
    ),
)
_register(
    "tabular",
    DatasetInfo(
        name="digits",
        input_key="inputs",
        input_shape=(64,),
        num_classes=10,
        task="classification",
        splits={"train": 1438, "test": 359},
        class_names=DIGITS,
        description="UCI optical digits, 8x8 images flattened to 64 features. " + _TABULAR_NOTE.format(strat=", stratified by class"),
    ),
)
_register(
    "tabular",
    DatasetInfo(
        name="breast_cancer",
        input_key="inputs",
        input_shape=(30,),
        num_classes=2,
        task="classification",
        splits={"train": 456, "test": 113},
        class_names=("malignant", "benign"),
        description="Wisconsin diagnostic breast cancer. " + _TABULAR_NOTE.format(strat=", stratified by class"),
    ),
)
_register(
    "tabular",
    DatasetInfo(
        name="diabetes",
        input_key="inputs",
        input_shape=(10,),
        num_classes=None,
        task="regression",
        splits={"train": 354, "test": 88},
        description=(
            "Diabetes progression one year after baseline (Efron et al., 2004). "
            + _TABULAR_NOTE.format(strat="")
            + " 'label' is float32, the target standardized with the train split's mean and standard deviation."
        ),
    ),
)
_register(
    "tabular",
    DatasetInfo(
        name="iris",
        input_key="inputs",
        input_shape=(4,),
        num_classes=3,
        task="classification",
        splits={"train": 120, "test": 30},
        class_names=("setosa", "versicolor", "virginica"),
        description="Fisher's iris. " + _TABULAR_NOTE.format(strat=", stratified by class"),
    ),
)
_register(
    "tabular",
    DatasetInfo(
        name="wine",
        input_key="inputs",
        input_shape=(13,),
        num_classes=3,
        task="classification",
        splits={"train": 142, "test": 36},
        class_names=("class_0", "class_1", "class_2"),
        description="UCI wine recognition. " + _TABULAR_NOTE.format(strat=", stratified by class"),
    ),
)
CATALOG.seal()  # the datasets above are built in; jdl.data.register adds the user's

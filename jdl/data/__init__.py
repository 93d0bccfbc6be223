"""Datasets for jdl: Fashion-MNIST, MNIST, MNIST-1D and small scikit-learn tables.

    >>> from jdl import data
    >>> train = data.load("fashion_mnist", "train[:90%]")   # {"image": uint8, "label": int32}
    >>> val = data.load("fashion_mnist", "train[90%:]")
    >>> data.info("fashion_mnist").class_names[0]
    'T-shirt/top'

Image and MNIST-1D datasets are TFDS datasets (array_record files, prepared once
without TensorFlow, then cached as .npy); the tabular ones are built in memory.
See docs/data.md for where the data comes from and the environment variables.
Importing this package is cheap: TFDS, mnist1d and scikit-learn are imported only
when needed.
"""

from jdl.data.catalog import DatasetInfo
from jdl.data.core import data_source, info, list_datasets, load, prepare
from jdl.data.folder import register_folder
from jdl.data.idx import read_idx, write_idx
from jdl.data.sources import tfds_data_dir
from jdl.data.tabular import target_stats
from jdl.data.user import register
from jdl.data import transforms  # config.data.transform: derived targets; register your own

__all__ = [
    "DatasetInfo",
    "data_source",
    "info",
    "list_datasets",
    "load",
    "prepare",
    "read_idx",
    "register",
    "register_folder",
    "target_stats",
    "tfds_data_dir",
    "write_idx",
]


"""plait.examples.vision: image classifiers trained end to end with plait.

Run ``plait-vision --help``. The CNN is written with ``plait.nnx``, the ResNet with
``plait.linen``; both train through one data-parallel loop.
"""

from importlib.metadata import version as _version

from ._data import Dataset as Dataset
from ._data import DatasetIntegrityError as DatasetIntegrityError
from ._data import DatasetUnavailableError as DatasetUnavailableError
from ._data import load_dataset as load_dataset
from ._pipeline import Normalization as Normalization
from ._pipeline import epoch_batches as epoch_batches
from ._pipeline import shard_batch as shard_batch
from .configs import get_config as get_config

__version__ = _version("plait-examples-vision")

"""plait.checkpoint: safe, resharding checkpoints for plait over Orbax and tensorstore.

See the package README for the guarantees and how they are tested.
"""

from importlib.metadata import version as _version

from ._convert import linen_to_nnx as linen_to_nnx
from ._convert import nnx_to_linen as nnx_to_linen
from ._errors import CheckpointError as CheckpointError
from ._errors import CheckpointExistsError as CheckpointExistsError
from ._errors import CheckpointMismatchError as CheckpointMismatchError
from ._errors import CorruptCheckpointError as CorruptCheckpointError
from ._errors import IncompleteCheckpointError as IncompleteCheckpointError
from ._errors import UnsupportedTreeError as UnsupportedTreeError
from ._flax import load_flax_checkpoint as load_flax_checkpoint
from ._manager import CheckpointManager as CheckpointManager
from ._msgpack import export_msgpack as export_msgpack
from ._msgpack import import_msgpack as import_msgpack
from ._restore import CheckpointInfo as CheckpointInfo
from ._restore import PartialRestore as PartialRestore
from ._restore import read_metadata as read_metadata
from ._restore import restore as restore
from ._rules import KeyRule as KeyRule
from ._rules import cast as cast
from ._rules import drop as drop
from ._rules import rename as rename
from ._rules import reshape as reshape
from ._rules import split as split
from ._rules import transpose as transpose
from ._save import save as save

__version__ = _version("plait-checkpoint")

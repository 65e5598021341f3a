"""plait.bridge: Linen modules inside NNX, and NNX modules inside Linen.

The one place where ``plait.nnx`` and ``plait.linen`` meet (neither imports the other).
The API is Flax 0.12's ``flax.nnx.bridge``: port with
``from flax.nnx import bridge`` -> ``from plait import bridge``.

* :class:`ToNNX` / :func:`lazy_init`: a Linen module as an NNX module.
* :class:`ToLinen` / :func:`to_linen` (and ``wrappers.to_linen_class``): an NNX module
  as a Linen module.
* :class:`Module` / :func:`compact`: NNX modules written Linen-style, with
  :func:`nnx_in_bridge_mdl` / :func:`linen_in_bridge_mdl` for submodules of either kind.
* :class:`NNXMeta`, ``variables``: the conversion of Variables and their metadata.
"""

from importlib.metadata import version as _version

from plait.nnx import initializers as initializers

from . import interop as interop
from . import module as module
from . import variables as variables
from . import wrappers as wrappers
from ._context import current_context as current_context
from ._context import current_linen_module as current_linen_module
from ._context import current_module as current_module
from ._errors import BridgeError as BridgeError
from ._errors import InitializationError as InitializationError
from ._errors import MutabilityError as MutabilityError
from ._errors import NotInitializedError as NotInitializedError
from ._errors import UnknownStateWarning as UnknownStateWarning
from ._errors import VariableLayoutError as VariableLayoutError
from ._functional import Functional as Functional
from ._functional import functional as functional
from ._interop import linen_in_bridge_mdl as linen_in_bridge_mdl
from ._interop import nnx_in_bridge_mdl as nnx_in_bridge_mdl
from ._module import AttrPriority as AttrPriority
from ._module import Module as Module
from ._module import Scope as Scope
from ._module import compact as compact
from ._to_linen import ToLinen as ToLinen
from ._to_linen import linen_rngs_dict as linen_rngs_dict
from ._to_linen import to_linen as to_linen
from ._to_linen import to_linen_class as to_linen_class
from ._to_nnx import ToNNX as ToNNX
from ._to_nnx import lazy_init as lazy_init
from ._variables import NNXMeta as NNXMeta
from ._variables import with_partitioning as with_partitioning

__version__ = _version("plait-bridge")

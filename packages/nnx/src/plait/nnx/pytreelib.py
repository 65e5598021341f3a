"""Objects (``nnx.pytreelib``, alias ``nnx.object``): the base class of stateful nodes."""

from plait.core import Data as Data
from plait.core import Object as Object
from plait.core import Pytree as Pytree
from plait.core import Static as Static
from plait.core import data as data
from plait.core import is_data as is_data
from plait.core import register_data_type as register_data_type
from plait.core import static as static

from ._graph_api import check_pytree as check_pytree
from ._graph_api import dataclass as dataclass
from ._graph_api import has_data as has_data

"""Modules (``nnx.module``): the ``Module`` base class and functions over module graphs."""

from plait.core import iter_children as iter_children

from ._module import M as M
from ._module import Module as Module
from ._module import capture as capture
from ._module import iter_module_children as iter_module_children
from ._module import iter_modules as iter_modules
from ._module import tuple_init as tuple_init
from ._module import tuple_reduce as tuple_reduce
from ._module import view as view
from ._module import view_info as view_info
from ._module import with_attributes as with_attributes

"""Linen-style NNX modules (Flax's ``flax.nnx.bridge.module``)."""

from ._context import MODULE_CONTEXT as MODULE_CONTEXT
from ._context import ModuleContext as ModuleContext
from ._context import ModuleStackEntry as ModuleStackEntry
from ._context import current_context as current_context
from ._context import current_module as current_module
from ._module import AttrPriority as AttrPriority
from ._module import Module as Module
from ._module import ModuleBase as ModuleBase
from ._module import ModuleMeta as ModuleMeta
from ._module import ModuleState as ModuleState
from ._module import Scope as Scope
from ._module import compact as compact
from ._module import has_setup as has_setup

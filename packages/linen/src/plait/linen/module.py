"""The Module system (Flax's ``flax.linen.module``)."""

from ._apply import apply as apply
from ._apply import init as init
from ._apply import init_with_output as init_with_output
from ._context import Interceptor as Interceptor
from ._context import InterceptorContext as InterceptorContext
from ._context import compact as compact
from ._context import disable_named_call as disable_named_call
from ._context import enable_named_call as enable_named_call
from ._context import intercept_methods as intercept_methods
from ._context import merge_param as merge_param
from ._context import nowrap as nowrap
from ._context import override_named_call as override_named_call
from ._context import run_interceptors as run_interceptors
from ._module import Module as Module
from ._name_scope import CompactNameScope as CompactNameScope
from ._name_scope import compact_name_scope as compact_name_scope
from ._name_scope import share_scope as share_scope

"""Linen variables <-> NNX Variables (Flax's ``flax.nnx.bridge.variables``)."""

from ._variables import NNXMeta as NNXMeta
from ._variables import get_col_name as get_col_name
from ._variables import is_vanilla_variable as is_vanilla_variable
from ._variables import linen_vars_to_nnx_attrs as linen_vars_to_nnx_attrs
from ._variables import nnx_attrs_to_linen_vars as nnx_attrs_to_linen_vars
from ._variables import sort_variable_types as sort_variable_types
from ._variables import to_linen_var as to_linen_var
from ._variables import to_nnx_var as to_nnx_var
from ._variables import with_partitioning as with_partitioning

"""Lifted transforms (Flax's ``flax.linen.transforms``)."""

from ._lift import In as In
from ._lift import Out as Out
from ._transforms import add_metadata_axis as add_metadata_axis
from ._transforms import broadcast as broadcast
from ._transforms import checkpoint as checkpoint
from ._transforms import cond as cond
from ._transforms import custom_vjp as custom_vjp
from ._transforms import fold_rngs as fold_rngs
from ._transforms import grad as grad
from ._transforms import jit as jit
from ._transforms import jvp as jvp
from ._transforms import map_variables as map_variables
from ._transforms import named_call as named_call
from ._transforms import remat as remat
from ._transforms import remat_scan as remat_scan
from ._transforms import scan as scan
from ._transforms import switch as switch
from ._transforms import value_and_grad as value_and_grad
from ._transforms import vjp as vjp
from ._transforms import vmap as vmap
from ._transforms import while_loop as while_loop

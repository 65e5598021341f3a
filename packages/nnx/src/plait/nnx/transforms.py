"""Lifted transforms (``nnx.transforms``): plait.core's stateful jit, grad, vmap, scan..."""

from plait.core import Carry as Carry
from plait.core import DiffState as DiffState
from plait.core import StateAxes as StateAxes
from plait.core import StateSharding as StateSharding
from plait.core import cached_partial as cached_partial
from plait.core import cond as cond
from plait.core import custom_vjp as custom_vjp
from plait.core import eval_shape as eval_shape
from plait.core import fori_loop as fori_loop
from plait.core import grad as grad
from plait.core import jit as jit
from plait.core import jit_partial as jit_partial
from plait.core import jvp as jvp
from plait.core import pmap as pmap
from plait.core import remat as remat
from plait.core import scan as scan
from plait.core import shard_map as shard_map
from plait.core import switch as switch
from plait.core import value_and_grad as value_and_grad
from plait.core import vjp as vjp
from plait.core import vmap as vmap
from plait.core import while_loop as while_loop

from ._transform_extras import checkify as checkify
from ._transform_extras import make_jaxpr as make_jaxpr
from ._transform_extras import transform_metadata as transform_metadata

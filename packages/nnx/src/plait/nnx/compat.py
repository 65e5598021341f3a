"""Graph-mode defaults (``nnx.compat``): nnx functions with ``graph=True`` preset.

Flax plans to make tree mode (``graph=False``) the default; code written for graph mode
can call these and keep its behaviour. Transforms also preset ``graph_updates=True``.

Example:
  >>> from plait import nnx
  >>> nnx.compat.split.keywords
  {'graph': True}
"""

from __future__ import annotations

from functools import partial

from plait.core import clone as _clone
from plait.core import flatten as _flatten
from plait.core import fork_rngs as _fork_rngs
from plait.core import graphdef as _graphdef
from plait.core import iter_children as _iter_children
from plait.core import iter_graph as _iter_graph
from plait.core import recursive_map as _recursive_map
from plait.core import reseed as _reseed
from plait.core import split as _split
from plait.core import split_rngs as _split_rngs
from plait.core import state as _state

from . import _module, _rngs, _spmd, _transform_extras
from . import transforms as _transforms

_GRAPH = {"graph": True}
_GRAPH_AND_UPDATES = {"graph": True, "graph_updates": True}

# graph functions
backup_keys = partial(_rngs.backup_keys, **_GRAPH)
clone = partial(_clone, **_GRAPH)
flatten = partial(_flatten, **_GRAPH)
get_abstract_model = partial(_spmd.get_abstract_model, **_GRAPH)
graphdef = partial(_graphdef, **_GRAPH)
iter_children = partial(_iter_children, **_GRAPH)
iter_graph = partial(_iter_graph, **_GRAPH)
iter_modules = partial(_module.iter_modules, **_GRAPH)
recursive_map = partial(_recursive_map, **_GRAPH)
reseed = partial(_reseed, **_GRAPH)
split = partial(_split, **_GRAPH)
state = partial(_state, **_GRAPH)
view = partial(_module.view, **_GRAPH)
view_info = partial(_module.view_info, **_GRAPH)

# transforms and rng operations
cached_partial = partial(_transforms.cached_partial, **_GRAPH_AND_UPDATES)
checkify = partial(_transform_extras.checkify, **_GRAPH_AND_UPDATES)
cond = partial(_transforms.cond, **_GRAPH_AND_UPDATES)
custom_vjp = partial(_transforms.custom_vjp, **_GRAPH_AND_UPDATES)
eval_shape = partial(_transforms.eval_shape, **_GRAPH_AND_UPDATES)
fori_loop = partial(_transforms.fori_loop, **_GRAPH_AND_UPDATES)
fork_rngs = partial(_fork_rngs, **_GRAPH_AND_UPDATES)
grad = partial(_transforms.grad, **_GRAPH_AND_UPDATES)
jit = partial(_transforms.jit, **_GRAPH_AND_UPDATES)
jvp = partial(_transforms.jvp, **_GRAPH_AND_UPDATES)
pmap = partial(_transforms.pmap, **_GRAPH_AND_UPDATES)
remat = partial(_transforms.remat, **_GRAPH_AND_UPDATES)
scan = partial(_transforms.scan, **_GRAPH_AND_UPDATES)
shard_map = partial(_transforms.shard_map, **_GRAPH_AND_UPDATES)
split_rngs = partial(_split_rngs, **_GRAPH_AND_UPDATES)
switch = partial(_transforms.switch, **_GRAPH_AND_UPDATES)
value_and_grad = partial(_transforms.value_and_grad, **_GRAPH_AND_UPDATES)
vjp = partial(_transforms.vjp, **_GRAPH_AND_UPDATES)
vmap = partial(_transforms.vmap, **_GRAPH_AND_UPDATES)
while_loop = partial(_transforms.while_loop, **_GRAPH_AND_UPDATES)

"""Frozen dataclasses that are JAX pytrees (``flax.struct`` compatible).

A field is a pytree child (traced by ``jax.jit``, mapped by ``jax.tree.map``) unless it is
declared ``field(pytree_node=False)`` (or with JAX's own ``jax.tree.static()``): such
static fields live in the treedef, so they must be hashable, and changing one retraces a
jitted function. Fields declared ``init=False`` are not part of the pytree: they are
recomputed by ``__post_init__`` when JAX rebuilds the object.

Example:
  >>> import jax
  >>> from plait.core import struct
  >>> @struct.dataclass
  ... class Model:
  ...   weight: jax.Array
  ...   activation: str = struct.field(pytree_node=False, default='relu')
  >>> m = Model(weight=1.0)
  >>> jax.tree.leaves(m)
  [1.0]
  >>> m.replace(weight=2.0)
  Model(weight=2.0, activation='relu')
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, TypeVar, dataclass_transform, overload

import jax

from . import serialization

__all__ = ["PyTreeNode", "dataclass", "field"]

# TypeVars, not PEP 695 syntax: ci/run.py parses the core with the host Python (3.11).
_T = TypeVar("_T")
TNode = TypeVar("TNode", bound="PyTreeNode")

# Set on every class this module has turned into a struct dataclass, so that applying the
# decorator twice (e.g. to a PyTreeNode subclass) is a no-op.
_MARKER = "_plait_struct_dataclass"


def field(pytree_node=True, *, metadata=None, **kwargs):
    """A ``dataclasses.field`` that also says whether the field is a pytree child.

    Args:
      pytree_node: True (default) for data that JAX traces; False for static
        configuration kept in the treedef (must be hashable).
      metadata: extra field metadata.
      **kwargs: forwarded to ``dataclasses.field`` (``default``, ``default_factory``,
        ``kw_only``, ``init``, ...).

    Example:
      >>> from plait.core import struct
      >>> @struct.dataclass
      ... class Opt:
      ...   lr: float
      ...   name: str = struct.field(pytree_node=False, default='sgd')
      >>> Opt(0.1).name
      'sgd'
    """
    return dataclasses.field(metadata={**(metadata or {}), "pytree_node": pytree_node}, **kwargs)


def _replace(self, **updates):
    """Returns a copy with the given fields replaced (``dataclasses.replace``)."""
    return dataclasses.replace(self, **updates)


def _is_static(f: dataclasses.Field) -> bool:
    return not f.metadata.get("pytree_node", True) or bool(f.metadata.get("static", False))


def _register_serialization(cls: type, data_fields: tuple[str, ...]) -> None:
    def to_state(x) -> dict[str, Any]:
        return {name: serialization.to_state_dict(getattr(x, name)) for name in data_fields}

    def from_state(x, state):
        serialization._expect_dict(state, x)
        serialization._check_keys(state, list(data_fields), x)
        updates = {
            name: serialization.from_state_dict(getattr(x, name), state[name], name=name)
            for name in data_fields
        }
        return dataclasses.replace(x, **updates)

    serialization.register_serialization_state(cls, to_state, from_state, override=True)


@overload
def dataclass(clz: _T, **kwargs) -> _T: ...  # noqa: UP047
@overload
def dataclass(**kwargs) -> Any: ...


@dataclass_transform(field_specifiers=(field,), frozen_default=True)
def dataclass(clz=None, **kwargs):  # noqa: UP047 (overloads carry the types)
    """Turns a class into a frozen dataclass registered as a JAX pytree with key paths.

    Args:
      clz: the class; omit it to get a decorator taking ``**kwargs``.
      **kwargs: forwarded to ``dataclasses.dataclass`` (``frozen`` defaults to True;
        ``kw_only=True`` and ``eq``/``order`` work as usual).

    Returns:
      The same class, now a dataclass with a ``replace(**updates)`` method, registered
      with ``jax.tree_util`` (children keyed by ``GetAttrKey``) and with
      ``serialization`` (state dict keyed by field name).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from plait.core import struct
      >>> @struct.dataclass(kw_only=True)
      ... class Pair:
      ...   a: jax.Array
      ...   b: jax.Array
      >>> jax.jit(lambda p: p.a + p.b)(Pair(a=jnp.ones(2), b=jnp.ones(2)))
      Array([2., 2.], dtype=float32)
    """
    if clz is None:
        return functools.partial(dataclass, **kwargs)
    if _MARKER in clz.__dict__:
        return clz
    kwargs.setdefault("frozen", True)
    cls = dataclasses.dataclass(clz, **kwargs)
    data_fields, meta_fields = [], []
    for f in dataclasses.fields(cls):
        if f.init:
            (meta_fields if _is_static(f) else data_fields).append(f.name)
    if "replace" not in cls.__dict__:
        cls.replace = _replace
    jax.tree_util.register_dataclass(cls, data_fields, meta_fields)
    _register_serialization(cls, tuple(data_fields))
    setattr(cls, _MARKER, True)
    return cls


@dataclass_transform(field_specifiers=(field,), frozen_default=True)
class PyTreeNode:
    """Base class whose subclasses become struct dataclasses automatically.

    Class keywords go to ``dataclass``: ``class Cfg(PyTreeNode, kw_only=True)``.

    Example:
      >>> import jax
      >>> from plait.core import struct
      >>> class State(struct.PyTreeNode):
      ...   step: int
      ...   tag: str = struct.field(pytree_node=False, default='train')
      >>> jax.tree.map(lambda x: x + 1, State(step=1))
      State(step=2, tag='train')
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__()
        dataclass(cls, **kwargs)

    def replace(self: TNode, **overrides) -> TNode:
        """Returns a copy with the given fields replaced."""
        return dataclasses.replace(self, **overrides)

"""Container Modules: ``List``, ``Dict`` and ``Sequential``.

``List`` items live under integer keys and ``Dict`` entries under their string keys, so
their paths in a State are ``(..., 0, ...)`` and ``(..., 'name', ...)``. Every structural
change (append, insert, delete, set) bumps core's structure epoch, so transform caches
see it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, MutableMapping, MutableSequence
from typing import Any, TypeVar

import jax
from plait.core import is_data

from ._core_internals import bump_structure_epoch, check_trace, freeze, thaw, track
from ._module import Module

A = TypeVar("A")


def _list_flatten_with_keys(lst: List) -> tuple[list[tuple[Any, Any]], tuple[Any, ...]]:
    items = lst.__dict__
    children, layout = [], []
    for i in range(len(items)):
        value = items[i]
        if is_data(value):
            children.append((jax.tree_util.SequenceKey(i), value))
            layout.append(None)
        else:
            layout.append(freeze((value,)))
    return children, (type(lst), tuple(layout))


def _list_flatten(lst: List) -> tuple[list[Any], tuple[Any, ...]]:
    children, aux = _list_flatten_with_keys(lst)
    return [c for _, c in children], aux


def _list_unflatten(aux: tuple[Any, ...], children: Iterable[Any]) -> List:
    cls, layout = aux
    lst = cls.__new__(cls)
    values = iter(children)
    for i, static in enumerate(layout):
        lst.__dict__[i] = next(values) if static is None else thaw(static)[0]
    return lst


def _register_list_pytree(cls: type) -> None:
    # Object's pytree registration keys children by attribute name; a List's keys are
    # integers, so it registers its own (SequenceKey paths, as for a Python list).
    jax.tree_util.register_pytree_with_keys(
        cls, _list_flatten_with_keys, _list_unflatten, _list_flatten
    )


class List(Module, MutableSequence[A], pytree=False):
    """A Module that is a mutable sequence of sub-modules, Variables, arrays or values.

    Items are children of the List with integer keys: a State of
    ``Model(layers=List([Linear(...), Linear(...)]))`` has paths ``('layers', 0, 'kernel')``.

    Example:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> layers = nnx.List([nnx.Param(jnp.ones(2)), nnx.Param(jnp.zeros(3))])
      >>> layers.append(nnx.Param(jnp.ones(1)))
      >>> len(layers), sorted(nnx.state(layers).keys())
      (3, [0, 1, 2])
    """

    def __init_subclass__(cls, pytree: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(pytree=False, **kwargs)
        if pytree:
            _register_list_pytree(cls)

    def __init__(self, it: Iterable[A] | None = None, /):
        if it is not None:
            for value in it:
                self.append(value)

    # -- storage: the instance dict holds exactly the items, keyed 0..n-1 -----------------

    def _store(self, index: int, value: Any) -> None:
        check_trace(self, f"[{index}]")
        self.__dict__[index] = track(value)
        bump_structure_epoch()

    def _index(self, index: int) -> int:
        if not isinstance(index, int):
            raise TypeError(
                f"List indices must be integers or slices, not {type(index).__name__}."
            )
        n = len(self.__dict__)
        resolved = index + n if index < 0 else index
        if not 0 <= resolved < n:
            raise IndexError(f"List index {index} out of range for a List of length {n}.")
        return resolved

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(
            f"List stores items only; cannot set attribute {name!r}.\nFix: use "
            "append/insert/[i] = ..., or keep extra attributes on the Module that owns the List."
        )

    def __len__(self) -> int:
        return len(self.__dict__)

    def __iter__(self) -> Iterator[A]:
        items = self.__dict__
        return (items[i] for i in range(len(items)))

    def __getitem__(self, index):  # int -> item, slice -> list of items
        if isinstance(index, slice):
            return [self.__dict__[i] for i in range(len(self.__dict__))[index]]
        return self.__dict__[self._index(index)]

    def __setitem__(self, index, value) -> None:
        if isinstance(index, slice):
            positions = range(len(self.__dict__))[index]
            values = list(value)
            if len(positions) != len(values):
                if index.step not in (None, 1):
                    raise ValueError(
                        f"attempt to assign a sequence of size {len(values)} to an extended "
                        f"slice of size {len(positions)}"
                    )
                items = list(self)
                items[index] = values
                self._replace_all(items)
                return
            for i, v in zip(positions, values, strict=True):
                self._store(i, v)
            return
        self._store(self._index(index), value)

    def __delitem__(self, index) -> None:
        if isinstance(index, slice):
            items = list(self)
            del items[index]
            self._replace_all(items)
            return
        position = self._index(index)
        items = list(self)
        del items[position]
        self._replace_all(items)

    def insert(self, index: int, value: A) -> None:
        items = list(self)
        items.insert(index, value)
        self._replace_all(items)

    def append(self, value: A) -> None:
        self._store(len(self.__dict__), value)

    def _replace_all(self, items: list[Any]) -> None:
        check_trace(self, "items")
        self.__dict__.clear()
        for i, v in enumerate(items):
            self.__dict__[i] = track(v)
        bump_structure_epoch()

    __hash__ = Module.__hash__  # reference semantics, like every Module

    def __eq__(self, other: object) -> bool:
        return self is other


_register_list_pytree(List)


class Dict(Module, MutableMapping[str, A]):
    """A Module that is a mutable mapping from strings to sub-modules, Variables or values.

    Entries are ordinary attributes: ``d['encoder']`` is ``d.encoder`` and its State path
    is ``(..., 'encoder', ...)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> d = nnx.Dict(w=nnx.Param(jnp.ones(2)))
      >>> d["b"] = nnx.Param(jnp.zeros(2))
      >>> sorted(d), d.b is d["b"]
      (['b', 'w'], True)
    """

    def __init__(self, *args, **kwargs):
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __getitem__(self, key: str) -> A:
        try:
            return self.__dict__[key]
        except KeyError:
            raise KeyError(key) from None

    def __setitem__(self, key: str, value: A) -> None:
        if not isinstance(key, str):
            raise TypeError(
                f"Dict keys must be strings (they become attribute names), got "
                f"{type(key).__name__} {key!r}.\nFix: use str(key), or a List for integer keys."
            )
        setattr(self, key, value)

    def __delitem__(self, key: str) -> None:
        if key not in self.__dict__:
            raise KeyError(key)
        delattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.__dict__))

    def __len__(self) -> int:
        return len(self.__dict__)

    def __contains__(self, key: object) -> bool:
        return key in self.__dict__

    __hash__ = Module.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other


def has_keyword_arg(func: Callable[..., Any], name: str) -> bool:
    """Whether ``func`` accepts the keyword argument ``name`` (by name, not ``**kwargs``)."""
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.name == name and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        for p in parameters
    )


class Sequential(Module):
    """Calls its layers in order, feeding each output to the next layer.

    A tuple output becomes the next layer's positional arguments and a dict output its
    keyword arguments. ``rngs=`` is passed to every layer that accepts an ``rngs`` keyword.
    Layers may be Modules or plain functions (``nnx.relu``); they are kept in
    ``self.layers``, a :class:`List`.

    Example:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> class Double(nnx.Module):
      ...   def __call__(self, x):
      ...     return 2 * x
      >>> model = nnx.Sequential(Double(), jnp.negative, Double())
      >>> model(jnp.ones(2)).tolist()
      [-4.0, -4.0]
    """

    def __init__(self, *fns: Callable[..., Any]):
        self.layers = List(fns)

    def __iter__(self) -> Iterator[Callable[..., Any]]:
        return iter(self.layers)

    def __call__(self, *args, rngs=None, **kwargs) -> Any:
        if len(self.layers) == 0:
            if len(args) == 1 and not kwargs:
                return args[0]
            if args and not kwargs:
                return args
            return kwargs or None
        output: Any = None
        for i, layer in enumerate(self.layers):
            if not callable(layer):
                raise TypeError(
                    f"Sequential.layers[{i}] is a {type(layer).__name__}, which is not "
                    "callable.\nFix: pass Modules or functions to Sequential."
                )
            if i > 0:
                if isinstance(output, tuple):
                    args, kwargs = output, {}
                elif isinstance(output, dict):
                    args, kwargs = (), dict(output)
                else:
                    args, kwargs = (output,), {}
            if rngs is not None and has_keyword_arg(layer, "rngs"):
                kwargs = {**kwargs, "rngs": rngs}
            output = layer(*args, **kwargs)
        return output

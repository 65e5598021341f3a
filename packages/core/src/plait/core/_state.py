"""State: a nested mapping from attribute paths to Variables (or arrays), and FlatState.

A State wraps a nested dict of plain dicts; nested mappings come back as ``State`` views on
access (``state.linear.kernel``, ``state['linear']['kernel']``). It is a JAX pytree whose
children are its values in sorted key order with ``DictKey`` entries, so
``jax.tree_util.keystr`` shows real paths.

Key order everywhere (State flattening, FlatState, graph flattening) is :func:`sort_keys`:
Python's sort, or, for keys of mixed types, ints before strings, so that the order of a
FlatState equals the order of the leaves of the GraphDef it came from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, TypeVar, overload

import jax

from . import _compat
from ._errors import UNMATCHED_LEAF, FilterError
from ._filters import Everything, Filter, PathIn, filters_to_predicates, to_predicate
from ._variable import Variable

K = TypeVar("K")
V = TypeVar("V")
PathParts = tuple[Any, ...]


def _mixed_key(k: Any) -> tuple[int, str, Any]:
    if isinstance(k, int):
        return (0, "", k)
    return (1, type(k).__name__, str(k))


def sort_keys(keys: Iterable[Any]) -> list[Any]:
    """Keys in plait's canonical order (see the module docstring)."""
    try:
        return sorted(keys)
    except TypeError:
        return sorted(keys, key=_mixed_key)


def _is_subtree(x: Any) -> bool:
    return isinstance(x, (dict, State)) or (isinstance(x, Mapping) and not isinstance(x, Variable))


def _to_plain(mapping: Mapping[Any, Any]) -> dict[Any, Any]:
    """Deep-copies nested mappings into plain dicts (leaves are kept as they are)."""
    if isinstance(mapping, State):
        mapping = mapping._mapping
    return {k: _to_plain(v) if _is_subtree(v) else v for k, v in mapping.items()}


def _flat_items(mapping: dict[Any, Any], prefix: PathParts, out_paths: list, out_leaves: list) -> None:
    for key in sort_keys(mapping):
        value = mapping[key]
        path = prefix + (key,)
        if type(value) is dict:
            _flat_items(value, path, out_paths, out_leaves)
        elif isinstance(value, State):
            _flat_items(value._mapping, path, out_paths, out_leaves)
        elif isinstance(value, Mapping) and not isinstance(value, Variable):
            _flat_items(dict(value), path, out_paths, out_leaves)
        else:
            out_paths.append(path)
            out_leaves.append(value)


def flat_paths_and_leaves(mapping: Mapping[Any, Any]) -> tuple[list[PathParts], list[Any]]:
    """Sorted ``(paths, leaves)`` of a nested mapping (the graph layer's merge input)."""
    paths: list[PathParts] = []
    leaves: list[Any] = []
    raw = mapping._mapping if isinstance(mapping, State) else mapping
    _flat_items(raw if type(raw) is dict else dict(raw), (), paths, leaves)
    return paths, leaves


def nest(paths: Iterable[PathParts], leaves: Iterable[Any]) -> dict[Any, Any]:
    """Builds a nested dict from flat paths (the inverse of :func:`flat_paths_and_leaves`)."""
    root: dict[Any, Any] = {}
    for path, leaf in zip(paths, leaves, strict=False):
        node = root
        for key in path[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            node = child
        if not path:
            raise FilterError("A state leaf needs a non-empty path; got the path ().")
        node[path[-1]] = leaf
    return root


class State(MutableMapping[K, V]):
    """A nested mapping from keys to Variables/arrays or further States.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait.core import State, Param
        >>> s = State({"linear": {"kernel": Param(jnp.ones((2,))), "bias": Param(jnp.zeros((2,)))}})
        >>> s.linear.kernel.shape
        (2,)
        >>> [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(s)]
        ["['linear']['bias'].value", "['linear']['kernel'].value"]
    """

    __slots__ = ("_mapping",)

    def __init__(self, mapping: Mapping[K, Any] | Iterable[tuple[K, Any]], /, *, _copy: bool = True):
        if _copy:
            if not isinstance(mapping, Mapping):
                mapping = dict(mapping)
            raw = _to_plain(mapping)
        else:
            raw = mapping._mapping if isinstance(mapping, State) else mapping  # type: ignore[assignment]
        object.__setattr__(self, "_mapping", raw)

    @property
    def raw_mapping(self) -> dict[K, Any]:
        return self._mapping

    def __getitem__(self, key: K) -> Any:
        value = self._mapping[key]
        if type(value) is dict:
            return State(value, _copy=False)
        return value

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__") or key == "_mapping":
            raise AttributeError(key)
        try:
            return self[key]  # type: ignore[index]
        except KeyError:
            raise AttributeError(
                f"State has no key {key!r}; its keys are {sort_keys(self._mapping)}."
            ) from None

    def __setitem__(self, key: K, value: Any) -> None:
        if _is_subtree(value):
            value = _to_plain(value)
        self._mapping[key] = value

    def __setattr__(self, key: str, value: Any) -> None:
        if key == "_mapping":
            object.__setattr__(self, key, value)
        else:
            self[key] = value  # type: ignore[index]

    def __copy__(self) -> State:
        return State(dict(self._mapping), _copy=False)

    def __deepcopy__(self, memo: dict[int, Any]) -> State:
        import copy

        return State(copy.deepcopy(self._mapping, memo), _copy=False)

    def __delitem__(self, key: K) -> None:
        del self._mapping[key]

    def __delattr__(self, key: str) -> None:
        del self._mapping[key]  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[K]:
        return iter(self._mapping)

    def __len__(self) -> int:
        return len(self._mapping)

    def __contains__(self, key: object) -> bool:
        return key in self._mapping

    def __eq__(self, other: object) -> bool:
        if isinstance(other, State):
            return self._mapping == other._mapping
        if isinstance(other, Mapping):
            return self._mapping == _to_plain(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return _repr_nested(self._mapping, "State(", ")")

    # -- flat views ---------------------------------------------------------------------------

    def flat_state(self) -> FlatState[V]:
        paths, leaves = flat_paths_and_leaves(self._mapping)
        return FlatState.from_sorted_keys_values(tuple(paths), leaves)

    @classmethod
    def from_flat_path(cls, flat_state: Mapping[PathParts, V] | Iterable[tuple[PathParts, V]], /) -> State:
        items = flat_state.items() if isinstance(flat_state, Mapping) else flat_state
        paths, leaves = [], []
        for path, leaf in items:
            paths.append(tuple(path))
            leaves.append(leaf)
        return cls(nest(paths, leaves), _copy=False)

    def map(self, f: Callable[[PathParts, V], Any]) -> State:
        return map_state(f, self)

    def to_pure_dict(self, extract_fn: Callable[[PathParts, Any], Any] | None = None) -> dict[str, Any]:
        return to_pure_dict(self, extract_fn)

    def replace_by_pure_dict(self, pure_dict: Mapping[Any, Any], replace_fn: Callable[[Any, Any], Any] | None = None) -> None:
        replace_by_pure_dict(self, pure_dict, replace_fn)

    def split(self, first: Filter, /, *filters: Filter) -> Any:
        return split_state(self, first, *filters)

    def filter(self, first: Filter, /, *filters: Filter) -> Any:
        return filter_state(self, first, *filters)

    @classmethod
    def merge(cls, state: Mapping[Any, Any], /, *states: Mapping[Any, Any]) -> State:
        return merge_state(state, *states, cls=cls)

    def __or__(self, other: Mapping[Any, Any]) -> State:
        if not other:
            return self
        return merge_state(self, other)

    def __sub__(self, other: Mapping[Any, Any]) -> State:
        """The paths of ``self`` that are not in ``other``."""
        if not other:
            return self
        drop = set(flat_paths_and_leaves(other)[0])
        paths, leaves = flat_paths_and_leaves(self)
        keep = [(p, v) for p, v in zip(paths, leaves, strict=False) if p not in drop]
        return State(nest([p for p, _ in keep], [v for _, v in keep]), _copy=False)


def _repr_nested(mapping: Mapping[Any, Any], open_: str, close: str, indent: int = 0) -> str:
    if not mapping:
        return open_ + "{}" + close
    pad = "  " * (indent + 1)
    lines = [open_ + "{"]
    for key in sort_keys(mapping):
        value = mapping[key]
        if isinstance(value, Mapping) and not isinstance(value, Variable):
            inner = _repr_nested(value, "", "", indent + 1)
            lines.append(f"{pad}{key!r}: {inner},")
        else:
            text = repr(value).replace("\n", "\n" + pad)
            lines.append(f"{pad}{key!r}: {text},")
    lines.append("  " * indent + "}" + close)
    return "\n".join(lines)


def _state_flatten_with_keys(state: State) -> tuple[list[tuple[Any, Any]], tuple[Any, ...]]:
    mapping = state._mapping
    keys = sort_keys(mapping)
    return [(_compat.DictKey(k), mapping[k]) for k in keys], tuple(keys)


def _state_flatten(state: State) -> tuple[list[Any], tuple[Any, ...]]:
    mapping = state._mapping
    keys = sort_keys(mapping)
    return [mapping[k] for k in keys], tuple(keys)


def _state_unflatten(keys: tuple[Any, ...], children: Iterable[Any]) -> State:
    return State(dict(zip(keys, children, strict=False)), _copy=False)


jax.tree_util.register_pytree_with_keys(State, _state_flatten_with_keys, _state_unflatten, _state_flatten)


class FlatState(Sequence[tuple[PathParts, V]]):
    """A flat sequence of ``(path, leaf)`` pairs, sorted by path.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import FlatState
        >>> fs = FlatState([(("b",), 2), (("a", 0), 1)], sort=True)
        >>> fs.paths, fs.leaves
        ((('a', 0), ('b',)), [1, 2])
    """

    __slots__ = ("_keys", "_values")

    def __init__(self, items: Iterable[tuple[PathParts, V]], /, *, sort: bool):
        pairs = [(tuple(p), v) for p, v in items]
        if sort:
            pairs = _sort_pairs(pairs)
        self._keys: tuple[PathParts, ...] = tuple(p for p, _ in pairs)
        self._values: list[V] = [v for _, v in pairs]

    @staticmethod
    def from_sorted_keys_values(keys: tuple[PathParts, ...], values: list[V], /) -> FlatState[V]:
        flat = object.__new__(FlatState)
        flat._keys = keys
        flat._values = values
        return flat

    @property
    def paths(self) -> tuple[PathParts, ...]:
        return self._keys

    @property
    def leaves(self) -> list[V]:
        return self._values

    @overload
    def __getitem__(self, index: int) -> tuple[PathParts, V]: ...
    @overload
    def __getitem__(self, index: slice) -> FlatState[V]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return FlatState.from_sorted_keys_values(self._keys[index], self._values[index])
        return self._keys[index], self._values[index]

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[tuple[PathParts, V]]:
        return iter(zip(self._keys, self._values, strict=False))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FlatState):
            return NotImplemented
        return self._keys == other._keys and self._values == other._values

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        body = ",\n".join(f"  ({p!r}, {v!r})" for p, v in self)
        return f"FlatState([\n{body}\n])" if body else "FlatState([])"

    def to_nested_state(self) -> State:
        return State(nest(self._keys, self._values), _copy=False)

    def split(self, first: Filter, /, *filters: Filter) -> Any:
        groups = _partition(self._keys, self._values, (first, *filters), exhaustive=True)
        results = tuple(FlatState.from_sorted_keys_values(tuple(k), v) for k, v in groups)
        return results[0] if len(results) == 1 else results

    def filter(self, first: Filter, /, *filters: Filter) -> Any:
        groups = _partition(self._keys, self._values, (first, *filters), exhaustive=False)
        results = tuple(FlatState.from_sorted_keys_values(tuple(k), v) for k, v in groups)
        return results[0] if len(results) == 1 else results

    @staticmethod
    def merge(flat_state: Iterable[tuple[PathParts, V]], /, *flat_states: Iterable[tuple[PathParts, V]]) -> FlatState[V]:
        merged: dict[PathParts, V] = {}
        for fs in (flat_state, *flat_states):
            for path, value in fs:
                merged[tuple(path)] = value
        return FlatState(merged.items(), sort=True)


def _sort_pairs(pairs: list[tuple[PathParts, Any]]) -> list[tuple[PathParts, Any]]:
    try:
        return sorted(pairs, key=lambda pv: pv[0])
    except TypeError:
        return sorted(pairs, key=lambda pv: tuple(_mixed_key(k) for k in pv[0]))


def _flat_state_flatten_with_keys(fs: FlatState[Any]) -> tuple[list[tuple[Any, Any]], tuple[PathParts, ...]]:
    return [(_compat.FlattenedIndexKey(i), v) for i, v in enumerate(fs._values)], fs._keys


def _flat_state_flatten(fs: FlatState[Any]) -> tuple[list[Any], tuple[PathParts, ...]]:
    return fs._values, fs._keys


def _flat_state_unflatten(keys: tuple[PathParts, ...], values: Iterable[Any]) -> FlatState[Any]:
    return FlatState.from_sorted_keys_values(keys, list(values))


jax.tree_util.register_pytree_with_keys(
    FlatState, _flat_state_flatten_with_keys, _flat_state_unflatten, _flat_state_flatten
)


def _describe(value: Any) -> str:
    if isinstance(value, Variable):
        return type(value).__name__
    if _compat.is_array(value):
        return f"array {tuple(value.shape)} {value.dtype}"
    return type(value).__name__


def _filter_text(f: Filter) -> str:
    if isinstance(f, type):
        return f.__name__
    if f is Ellipsis:
        return "..."
    return repr(f)


def _partition(
    paths: Sequence[PathParts],
    leaves: Sequence[Any],
    filters: tuple[Filter, ...],
    *,
    exhaustive: bool,
    predicates: tuple[Any, ...] | None = None,
    value_of: Callable[[Any], Any] | None = None,
) -> list[tuple[list[PathParts], list[Any]]]:
    """Groups (paths, leaves) by the first filter each leaf matches.

    ``predicates``: the filters already turned into predicates. ``value_of``: what the
    predicates see of each item of ``leaves`` (the items themselves go into the groups).
    """
    if predicates is None:
        predicates = filters_to_predicates(filters) if exhaustive else tuple(to_predicate(f) for f in filters)
    groups: list[tuple[list[PathParts], list[Any]]] = [([], []) for _ in predicates]
    if len(predicates) == 1 and isinstance(predicates[0], Everything):
        groups[0][0].extend(paths)
        groups[0][1].extend(leaves)
        return groups
    for path, item in zip(paths, leaves, strict=False):
        leaf = item if value_of is None else value_of(item)
        for group, predicate in zip(groups, predicates, strict=False):
            if predicate(path, leaf):
                group[0].append(path)
                group[1].append(item)
                break
        else:
            if exhaustive:
                names = [_filter_text(f) for f in filters]
                raise FilterError(
                    UNMATCHED_LEAF.format(
                        path=path, kind=_describe(leaf), filters=f"[{', '.join(names)}]", first=", ".join(names)
                    )
                )
    return groups


def to_flat_state(state: Mapping[Any, Any]) -> FlatState[Any]:
    """The sorted ``(path, leaf)`` pairs of a nested State."""
    paths, leaves = flat_paths_and_leaves(state)
    return FlatState.from_sorted_keys_values(tuple(paths), leaves)


def from_flat_state(flat_state: Mapping[PathParts, V] | Iterable[tuple[PathParts, V]], *, cls: type = State) -> State:
    """A nested State from ``(path, leaf)`` pairs or a ``{path: leaf}`` mapping."""
    items = flat_state.items() if isinstance(flat_state, Mapping) else flat_state
    paths, leaves = [], []
    for path, leaf in items:
        paths.append(tuple(path))
        leaves.append(leaf)
    return cls(nest(paths, leaves), _copy=False)


def filter_state(state: Mapping[Any, Any], first: Filter, /, *filters: Filter) -> Any:
    """The parts of ``state`` matching each filter (non-exhaustive; one State per filter).

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import State, Param, BatchStat, filter_state
        >>> s = State({"w": Param(jnp.ones(())), "m": BatchStat(jnp.zeros(()))})
        >>> list(filter_state(s, Param))
        ['w']
    """
    paths, leaves = flat_paths_and_leaves(state)
    groups = _partition(paths, leaves, (first, *filters), exhaustive=False)
    results = tuple(State(nest(p, v), _copy=False) for p, v in groups)
    return results[0] if len(results) == 1 else results


def split_state(state: Mapping[Any, Any], first: Filter = Ellipsis, /, *filters: Filter) -> Any:
    """Partitions ``state`` by filters; every leaf must match one (``...`` last catches all).

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import State, Param, BatchStat, split_state
        >>> s = State({"w": Param(jnp.ones(())), "m": BatchStat(jnp.zeros(()))})
        >>> params, rest = split_state(s, Param, ...)
        >>> list(params), list(rest)
        (['w'], ['m'])
    """
    paths, leaves = flat_paths_and_leaves(state)
    groups = _partition(paths, leaves, (first, *filters), exhaustive=True)
    results = tuple(State(nest(p, v), _copy=False) for p, v in groups)
    return results[0] if len(results) == 1 else results


def _merge_into(target: dict[Any, Any], source: Mapping[Any, Any]) -> None:
    for key, value in source.items():
        if _is_subtree(value):
            existing = target.get(key)
            if type(existing) is not dict:
                existing = target[key] = {}
            _merge_into(existing, value._mapping if isinstance(value, State) else value)
        else:
            target[key] = value


def merge_state(state: Mapping[Any, Any], /, *states: Mapping[Any, Any], cls: type = State) -> State:
    """Merges states into one; later states win where paths coincide.

    Examples:
        >>> from plait.core import State, merge_state
        >>> merge_state(State({"a": {"x": 1}}), State({"a": {"y": 2}})).to_pure_dict()
        {'a': {'x': 1, 'y': 2}}
    """
    merged: dict[Any, Any] = {}
    for s in (state, *states):
        _merge_into(merged, s._mapping if isinstance(s, State) else s)
    return cls(merged, _copy=False)


def map_state(f: Callable[[PathParts, Any], Any], state: Mapping[Any, Any]) -> State:
    """A new State with ``f(path, leaf)`` at every leaf."""
    paths, leaves = flat_paths_and_leaves(state)
    return State(nest(paths, [f(p, v) for p, v in zip(paths, leaves, strict=False)]), _copy=False)


def _default_extract(path: PathParts, x: Any) -> Any:
    return x.get_value() if isinstance(x, Variable) else x


def to_pure_dict(state: Mapping[Any, Any], extract_fn: Callable[[PathParts, Any], Any] | None = None) -> dict[str, Any]:
    """Nested plain dicts of raw values (Variables unwrapped), e.g. for checkpoints.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import State, Param, to_pure_dict
        >>> to_pure_dict(State({"w": Param(1.0)}))
        {'w': 1.0}
    """
    extract = extract_fn or _default_extract
    paths, leaves = flat_paths_and_leaves(state)
    return nest(paths, [extract(p, v) for p, v in zip(paths, leaves, strict=False)])


def _default_replace(x: Any, value: Any) -> Any:
    if isinstance(x, Variable):
        return x.replace(value)
    return value


def restore_int_paths(pure_dict: Mapping[Any, Any]) -> dict[Any, Any]:
    """Turns digit-string keys (``"0"``, as checkpoints store them) back into ints."""

    def fix(key: Any) -> Any:
        return int(key) if isinstance(key, str) and key.isdigit() else key

    return {
        fix(k): restore_int_paths(v) if isinstance(v, Mapping) and not isinstance(v, Variable) else v
        for k, v in pure_dict.items()
    }


def replace_by_pure_dict(
    state: State, pure_dict: Mapping[Any, Any], replace_fn: Callable[[Any, Any], Any] | None = None
) -> None:
    """Writes the raw values of a pure dict into ``state`` in place, path by path.

    Digit-string keys match integer keys (checkpoints store list indices as strings).
    """
    replace = replace_fn or _default_replace
    current = dict(zip(*flat_paths_and_leaves(state), strict=False))
    paths, values = flat_paths_and_leaves(pure_dict)
    for path, value in zip(paths, values, strict=False):
        target = path
        if target not in current:
            target = tuple(int(k) if isinstance(k, str) and k.isdigit() else k for k in path)
        if target not in current:
            raise FilterError(
                f"replace_by_pure_dict: the pure dict has the path {path} which the state does "
                f"not have. State paths look like {list(current)[:3]}. Fix: check the nesting "
                "and key names of the pure dict (it must mirror to_pure_dict(state))."
            )
        new_leaf = replace(current[target], value)
        node: Any = state._mapping
        for key in target[:-1]:
            node = node[key]
        node[target[-1]] = new_leaf


def diff(state: Mapping[Any, Any], other: Mapping[Any, Any]) -> State:
    """The entries of ``state`` whose paths ``other`` does not have.

    Examples:
        >>> from plait.core import State, diff
        >>> diff(State({"a": 1, "b": {"c": 2, "d": 3}}), State({"b": {"c": 5}})).to_pure_dict()
        {'a': 1, 'b': {'d': 3}}
    """
    if not other:
        return state if isinstance(state, State) else State(state)
    theirs = set(flat_paths_and_leaves(other)[0])
    paths, leaves = flat_paths_and_leaves(state)
    keep = [(p, v) for p, v in zip(paths, leaves, strict=True) if p not in theirs]
    return State(nest([p for p, _ in keep], [v for _, v in keep]), _copy=False)


def create_path_filters(state: Mapping[Any, Any]) -> dict[PathIn, Any]:
    """``{PathIn(paths...): value}``: the paths of ``state`` grouped by their (raw) value.

    Used to turn a State of per-Variable settings (e.g. sharding specs) into filters.

    Examples:
        >>> from plait.core import Param, State, create_path_filters
        >>> create_path_filters(State({"a": Param(1), "b": {"c": 1}, "d": 2}))
        {PathIn(('a',), ('b', 'c')): 1, PathIn(('d',)): 2}
    """
    groups: dict[Any, list[PathParts]] = {}
    paths, leaves = flat_paths_and_leaves(state)
    for path, leaf in zip(paths, leaves, strict=True):
        value = leaf.get_value() if isinstance(leaf, Variable) else leaf
        groups.setdefault(value, []).append(path)
    return {PathIn(*group): value for value, group in groups.items()}

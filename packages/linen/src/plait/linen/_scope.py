"""Scope: the variables, RNG streams and mutability seen by one module path.

A tree of scopes shares one *root* that owns the variables: a dict of collections
(``{'params': {...}, 'batch_stats': {...}}``), each a nested dict keyed by module path. A
scope reads and writes the sub-dict at its own path. Mutability is a collection filter fixed
at the root (``mutable=`` of ``apply``).

RNG: a root holds one key per stream name. The stream of a scope at relative path ``p`` has
key ``fold_in(root_key, hash(p))`` and a counter; ``make_rng`` returns
``fold_in(stream_key, count)`` and increments the counter, the derivation plait.core's
``RngStream`` uses. Keys are therefore deterministic per (path, stream name, call index) and
different for every call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from . import _meta as meta
from ._collections import collection_type
from ._errors import (
    ApplyScopeInvalidVariablesStructureError,
    ApplyScopeInvalidVariablesTypeError,
    InvalidRngError,
    InvalidScopeError,
    ModifyScopeVariableError,
    ScopeCollectionNotFound,
    ScopeParamNotFoundError,
    ScopeParamShapeError,
    ScopeVariableNotFoundError,
)
from ._filters import CollectionFilter, in_filter

T = TypeVar("T")

_NO_FLAG = object()


def _path_text(path: tuple[str, ...]) -> str:
    return "/" + "/".join(path)


def _suffix_hash(names: tuple[str, ...]) -> int:
    digest = hashlib.blake2b(digest_size=4)
    for name in names:
        digest.update(b"\x00")
        digest.update(str(name).encode("utf-8"))
    return int.from_bytes(digest.digest(), "big")


def is_prng_key(x: Any) -> bool:
    """Whether ``x`` is a JAX PRNG key (typed key array, or a raw uint32[2] key)."""
    if isinstance(x, jax.Array) or isinstance(x, np.ndarray):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            return True
        return x.dtype == jnp.uint32 and x.shape[-1:] == (2,)
    return False


def copy_structure(tree: Any) -> Any:
    """Copies the nested-mapping structure of ``tree`` into plain dicts (leaves shared)."""
    if isinstance(tree, Mapping):
        return {k: copy_structure(v) for k, v in tree.items()}
    return tree


def check_variables(variables: Any) -> None:
    """Raises a helpful error unless ``variables`` is a mapping of collection mappings."""
    if not isinstance(variables, Mapping):
        raise ApplyScopeInvalidVariablesTypeError(variables)
    for col, value in variables.items():
        if not isinstance(value, Mapping):
            raise ApplyScopeInvalidVariablesStructureError(variables, col)


def normalize_rngs(rngs: Any, *, where: str) -> dict[str, Any]:
    """``rngs`` as a dict of stream name -> key (a bare key means ``{'params': key}``)."""
    if rngs is None:
        return {}
    if not isinstance(rngs, Mapping):
        rngs = {"params": rngs}
    out = {}
    for name, key in rngs.items():
        if isinstance(key, int) and not isinstance(key, bool):
            key = jax.random.key(key)
        if not is_prng_key(key):
            raise InvalidRngError(
                f"{where}: the RNG for stream {name!r} must be a PRNG key, e.g. "
                f"jax.random.key(0), but got {type(key).__name__}"
                f"{getattr(key, 'shape', '')}.\n"
                f"Fix: pass rngs={{'{name}': jax.random.key(0)}}."
            )
        out[name] = key
    return out


class Scope:
    """Variables, RNG streams and mutability for one module path.

    Built by ``init``/``apply``/``bind`` (a root), and by :meth:`push` for children. Most
    users reach it through ``Module.scope``.
    """

    def __init__(
        self,
        variables: Mapping[str, Any] | None = None,
        rngs: Mapping[str, Any] | None = None,
        mutable: CollectionFilter = False,
        path: tuple[str, ...] = (),
        flags: Mapping[str, Any] | None = None,
        *,
        _parent: Scope | None = None,
        _name: str | None = None,
    ) -> None:
        if _parent is None:
            self.root: Scope = self
            self.path: tuple[str, ...] = tuple(path)
            self._rel: tuple[str, ...] = ()
            self._vars: dict[str, Any] = dict(variables or {})
            self._root_rngs: dict[str, Any] = dict(rngs or {})
            self.mutable: CollectionFilter = mutable
            self.flags: dict[str, Any] = dict(flags or {})
            self._invalid = False
        else:
            assert _name is not None
            self.root = _parent.root
            self.path = _parent.path + (_name,)
            self._rel = _parent._rel + (_name,)
            self.mutable = _parent.mutable
            self.flags = _parent.flags
        self.name = _name
        self.parent = _parent
        self._children: dict[str, Scope] = {}
        self._counters: dict[str, int] = {}
        self._stream_keys: dict[str, Any] = {}
        self._reserved: dict[str, set[str | None]] = {}
        self._transient: list[tuple[str, str | None]] = []

    # --- tree and validity -------------------------------------------------------------
    @property
    def path_text(self) -> str:
        """The path as ``/a/b`` text (``/`` for a root)."""
        return _path_text(self.path)

    @property
    def invalid(self) -> bool:
        """Whether the call that created this scope tree has returned."""
        return self.root._invalid

    def invalidate(self) -> None:
        """Marks the whole scope tree unusable (done when init/apply returns)."""
        self.root._invalid = True

    def _check_valid(self) -> None:
        if self.root._invalid:
            raise InvalidScopeError(self.path_text)

    def push(self, name: str, reuse: bool = True) -> Scope:
        """The child scope ``name`` (created on first use, then the same object)."""
        child = self._children.get(name)
        if child is None:
            child = Scope(_parent=self, _name=name)
            self._children[name] = child
        return child

    def reserve(self, name: str, col: str | None = None, *, transient: bool = False) -> None:
        """Records that ``name`` is used by a submodule (``col=None``) or a variable of
        ``col``. Transient reservations are dropped by :meth:`rewind`."""
        self._reserved.setdefault(name, set()).add(col)
        if transient:
            self._transient.append((name, col))

    def name_reserved(self, name: str, col: str | None = None) -> bool:
        """Whether ``name`` clashes with a reservation (a submodule clashes with anything,
        a variable with a submodule or a variable of the same collection)."""
        used = self._reserved.get(name)
        if not used:
            return False
        if col is None:
            return True
        return None in used or col in used

    def rewind(self) -> None:
        """Forgets the names reserved by the last ``@compact`` call, so the next call may
        create the same submodules and variables again."""
        for name, col in self._transient:
            used = self._reserved.get(name)
            if used is not None:
                used.discard(col)
                if not used:
                    del self._reserved[name]
        self._transient.clear()

    def default_name(self, prefix: str) -> str:
        """The first ``f'{prefix}{i}'`` that is not reserved."""
        i = 0
        while self.name_reserved(f"{prefix}{i}"):
            i += 1
        return f"{prefix}{i}"

    # --- flags ---------------------------------------------------------------------------
    def has_flag(self, key: str) -> bool:
        return key in self.flags

    def get_flag(self, key: str, default: Any = _NO_FLAG) -> Any:
        if key in self.flags or default is _NO_FLAG:
            return self.flags[key]
        return default

    # --- collections ---------------------------------------------------------------------
    def is_mutable_collection(self, col: str) -> bool:
        """Whether ``col`` may be written in this call."""
        return in_filter(self.mutable, col)

    def _subtree(self, col: str) -> Mapping[str, Any] | None:
        node: Any = self.root._vars.get(col)
        for name in self._rel:
            if not isinstance(node, Mapping) or name not in node:
                return None
            node = node[name]
        return node if isinstance(node, Mapping) else None

    def _writable_subtree(self, col: str) -> dict[str, Any]:
        root_vars = self.root._vars
        node = root_vars.get(col)
        if node is None:
            collection_type(col)  # registers the collection name with plait.core
            node = root_vars[col] = {}
        for name in self._rel:
            child = node.get(name)
            if child is None:
                child = node[name] = {}
            node = child
        return node

    def set_subtree(self, col: str, tree: Mapping[str, Any]) -> None:
        """Replaces this scope's part of collection ``col`` by ``tree`` (used by lifted
        transforms to write back the variables computed inside)."""
        if not self._rel:
            self.root._vars[col] = dict(tree)
            return
        parent = self.parent
        assert parent is not None
        node = parent._writable_subtree(col)
        node[self._rel[-1]] = dict(tree)

    def is_collection_empty(self, col: str) -> bool:
        """Whether this scope has no variable of ``col``."""
        return not self._subtree(col)

    def _collect(self) -> dict[str, Any]:
        out = {}
        for col in self.root._vars:
            tree = self._subtree(col)
            if tree is not None:
                out[col] = tree
        return out

    def variables(self) -> dict[str, Any]:
        """This scope's variables, as ``{collection: nested dict}``."""
        self._check_valid()
        return self._collect()

    def mutable_variables(self) -> dict[str, Any]:
        """This scope's variables of the mutable collections."""
        return {k: v for k, v in self._collect().items() if self.is_mutable_collection(k)}

    def has_variable(self, col: str, name: str) -> bool:
        tree = self._subtree(col)
        return tree is not None and name in tree

    def get_variable(self, col: str, name: str, default: Any = None) -> Any:
        self._check_valid()
        tree = self._subtree(col)
        if tree is None or name not in tree:
            return default
        return tree[name]

    def put_variable(self, col: str, name: str, value: Any) -> None:
        """Writes ``value`` to variable ``name`` of ``col`` (the collection must be mutable)."""
        self._check_valid()
        if not self.is_mutable_collection(col):
            raise ModifyScopeVariableError(col, name, self.path_text)
        self._writable_subtree(col)[name] = value

    def variable(
        self,
        col: str,
        name: str,
        init_fn: Callable[..., T] | None = None,
        *init_args: Any,
        unbox: bool = True,
        **init_kwargs: Any,
    ) -> Variable[T]:
        """The variable ``name`` of ``col``, created with ``init_fn(*init_args)`` if absent."""
        if not self.has_variable(col, name):
            if not self.is_mutable_collection(col) or init_fn is None:
                if self.is_collection_empty(col) and col not in self.root._vars:
                    raise ScopeCollectionNotFound(col, name, self.path_text)
                raise ScopeVariableNotFoundError(name, col, self.path_text)
            self.put_variable(col, name, init_fn(*init_args, **init_kwargs))
        return Variable(self, col, name, unbox=unbox)

    def param(
        self,
        name: str,
        init_fn: Callable[..., T],
        *init_args: Any,
        unbox: bool = True,
        **init_kwargs: Any,
    ) -> T:
        """The parameter ``name``: created with ``init_fn(make_rng('params'), *init_args)``
        if ``params`` is mutable and it is absent, else read and shape-checked."""
        if self.has_variable("params", name):
            value = self.get_variable("params", name)
            self._check_param_shape(name, value, init_fn, init_args, init_kwargs)
        else:
            if not self.is_mutable_collection("params"):
                if "params" not in self.root._vars:
                    raise ScopeCollectionNotFound("params", name, self.path_text)
                raise ScopeParamNotFoundError(name, self.path_text)
            value = init_fn(self.make_rng("params"), *init_args, **init_kwargs)
            self.put_variable("params", name, value)
        return meta.unbox(value) if unbox else value

    def _check_param_shape(
        self, name: str, value: Any, init_fn: Callable[..., Any], args: Any, kwargs: Any
    ) -> None:
        try:
            abstract = jax.eval_shape(lambda: init_fn(jax.random.key(0), *args, **kwargs))
        except Exception:  # noqa: BLE001 - an initializer that cannot run abstractly is not checked
            return
        given = jax.tree_util.tree_leaves(value)
        expected = jax.tree_util.tree_leaves(abstract)
        for val, abs_val in zip(given, expected, strict=False):
            if np.shape(val) != tuple(abs_val.shape):
                raise ScopeParamShapeError(
                    name, self.path_text, np.shape(val), tuple(abs_val.shape)
                )

    # --- rngs ----------------------------------------------------------------------------
    def has_rng(self, name: str) -> bool:
        """Whether an RNG stream ``name`` was given."""
        return name in self.root._root_rngs

    def rng_names(self) -> tuple[str, ...]:
        return tuple(self.root._root_rngs)

    def _stream_key(self, name: str) -> Any:
        key = self._stream_keys.get(name)
        if key is None:
            key = self.root._root_rngs[name]
            if self._rel:
                key = jax.random.fold_in(key, _suffix_hash(self._rel))
            self._stream_keys[name] = key
        return key

    def make_rng(self, name: str = "params") -> Any:
        """A new key from stream ``name`` (falls back to ``'params'`` if ``name`` is absent)."""
        self._check_valid()
        if not self.has_rng(name):
            if self.has_rng("params"):
                name = "params"
            else:
                raise InvalidRngError(
                    f'Module "{self.path_text}" needs an RNG for stream "{name}", but the '
                    f"call got streams {sorted(self.rng_names())}.\n"
                    f"Fix: pass it, e.g. model.apply(variables, x, "
                    f"rngs={{'{name}': jax.random.key(0)}})."
                )
        count = self._counters.get(name, 0)
        self._counters[name] = count + 1
        return jax.random.fold_in(self._stream_key(name), count)


class Variable[T]:
    """Handle to one variable of a scope, returned by ``Module.variable``.

    ``.value`` reads the current value (without its metadata box when ``unbox``), and
    assigning ``.value`` writes it (the collection must be mutable).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import linen as nn
        >>> class Counter(nn.Module):
        ...   @nn.compact
        ...   def __call__(self):
        ...     count = self.variable('counter', 'count', lambda: jnp.zeros((), jnp.int32))
        ...     count.value += 1
        ...     return count.value
        >>> variables = Counter().init(jax.random.key(0))
        >>> out, updated = Counter().apply(variables, mutable=['counter'])
        >>> int(updated['counter']['count'])
        2
    """

    def __init__(self, scope: Scope, collection: str, name: str, unbox: bool = True) -> None:
        self.scope = scope
        self.collection = collection
        self.name = name
        self.unbox = unbox

    @property
    def value(self) -> T:
        """The current value of the variable."""
        value = self.scope.get_variable(self.collection, self.name)
        return meta.unbox(value) if self.unbox else value

    @value.setter
    def value(self, value: T) -> None:
        if self.unbox:
            current = self.scope.get_variable(self.collection, self.name)
            has_box = any(
                meta.is_axis_metadata(x)
                for x in jax.tree_util.tree_leaves(current, is_leaf=meta.is_axis_metadata)
            )
            if has_box and not any(
                meta.is_axis_metadata(x)
                for x in jax.tree_util.tree_leaves(value, is_leaf=meta.is_axis_metadata)
            ):
                value = meta.replace_boxed(current, value)
        self.scope.put_variable(self.collection, self.name, value)

    def is_mutable(self) -> bool:
        """Whether the variable's collection is mutable in this call."""
        return self.scope.is_mutable_collection(self.collection)

    @property
    def type(self) -> type:
        """The plait.core Variable type of this variable's collection."""
        return collection_type(self.collection)

    def __repr__(self) -> str:
        return f"Variable({self.collection}{self.scope.path_text}/{self.name})"

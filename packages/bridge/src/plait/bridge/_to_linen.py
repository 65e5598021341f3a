"""``ToLinen``: an NNX module used inside Linen.

Linen modules are stateless, so the NNX module is rebuilt at every call:

* **init** constructs it for real, with ``nnx.Rngs`` drawn from the Linen RNG streams
  (``linen_rngs_dict``), and stores its state in the Linen collections named after the
  Variable types (``Param`` -> ``params``, ``BatchStat`` -> ``batch_stats``...), each
  Variable converted by ``metadata_fn`` (default :func:`to_linen_var`: metadata such as
  sharding names survives as a box).
* **apply** builds it abstractly (``nnx.eval_shape``: no initializer runs), pours the
  Linen values into its Variables, gives its RNG streams keys from the Linen streams, calls
  it, and writes the Variables of the mutable collections back.

RNG streams are never stored in Linen collections: each call draws fresh keys.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from plait import linen, nnx
from plait.core import FrozenDict, RngState, Variable, variable_name_from_type
from plait.linen import meta

from ._abstract import build_abstract, placeholders
from ._context import nnx_code_in
from ._errors import (
    LINEN_IMMUTABLE,
    LINEN_MISSING_VARIABLE,
    NOT_IN_LINEN,
    BridgeError,
    MutabilityError,
    UnknownStateWarning,
)
from ._to_nnx import ToNNX
from ._variables import _flatten, _unflatten, linen_vars_to_nnx_attrs, to_linen_var


def linen_rngs_dict(linen_module: linen.Module, add_default: bool = False) -> dict[str, Any]:
    """One fresh key from every RNG stream the Linen call was given.

    Must be called while ``linen_module`` is bound (inside init/apply). ``add_default``
    adds a ``'default'`` entry (seed 0) when there is none, so that ``nnx.Rngs`` built
    from the result never lacks a fallback stream.

    Examples:
        >>> import jax
        >>> from plait import linen as nn
        >>> from plait.bridge import linen_rngs_dict
        >>> class Show(nn.Module):
        ...   def __call__(self):
        ...     return sorted(linen_rngs_dict(self))
        >>> Show().apply({}, rngs={'params': jax.random.key(0), 'dropout': jax.random.key(1)})
        ['dropout', 'params']
    """
    scope = linen_module.scope
    if scope is None:
        raise BridgeError(NOT_IN_LINEN.format(module=linen_module))
    keys: dict[str, Any] = {name: linen_module.make_rng(name) for name in scope.rng_names()}
    if add_default and "default" not in keys:
        keys["default"] = 0
    return keys


def _resolve_method(module: Any, nnx_method: Callable[..., Any] | str | None) -> Callable:
    if nnx_method is None:
        nnx_method = "__call__"
    if isinstance(nnx_method, str):
        fn = getattr(type(module), nnx_method, None)
        if fn is None or not callable(fn):
            raise BridgeError(
                f"ToLinen: {type(module).__name__} has no method {nnx_method!r}.\n"
                "Fix: pass nnx_method= the name of one of its methods, or the function."
            )
        return functools.partial(fn, module)
    return functools.partial(nnx_method, module)


class ToLinen(linen.Module):
    """An NNX module class used as a Linen module.

    Attributes:
        nnx_class: the NNX module class (or any callable returning an NNX module).
        args: positional arguments of ``nnx_class``.
        kwargs: keyword arguments of ``nnx_class`` (``rngs`` is added unless
            ``skip_rng``).
        skip_rng: do not pass ``rngs=`` to ``nnx_class``.
        metadata_fn: converts each NNX Variable into the value stored in Linen (default
            :func:`to_linen_var`); ``None`` stores bare values.
        abstract_init: build the NNX module abstractly in ``apply`` (no initializer
            runs); ``False`` constructs it for real, e.g. for a constructor that cannot be
            traced.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import bridge, nnx
        >>> model = bridge.ToLinen(nnx.Linear, args=(3, 4))
        >>> variables = model.init(jax.random.key(0), jnp.ones((1, 3)))
        >>> jax.tree.map(jnp.shape, variables)
        {'params': {'bias': (4,), 'kernel': (3, 4)}}
        >>> model.apply(variables, jnp.ones((2, 3))).shape
        (2, 4)
    """

    nnx_class: Callable[..., nnx.Module]
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = FrozenDict({})
    skip_rng: bool = False
    metadata_fn: Callable[[Variable[Any]], Any] | None = to_linen_var
    abstract_init: bool = True

    def __call__(
        self, *args: Any, nnx_method: Callable[..., Any] | str | None = None, **kwargs: Any
    ) -> Any:
        with nnx_code_in(self):
            if self.is_initializing():
                return self._init_call(nnx_method, args, kwargs)
            return self._apply_call(nnx_method, args, kwargs)

    @linen.nowrap
    def _init_call(self, nnx_method: Any, args: tuple, kwargs: dict) -> Any:
        module = self.nnx_class(*self.args, **self._module_kwargs())
        # Store the state as constructed: what init returns must not depend on what the
        # call below does to it (e.g. a BatchNorm updating its statistics).
        initial = self._linen_state(module)
        out = _resolve_method(module, nnx_method)(*args, **kwargs)
        # Keep Variables created during the call (e.g. by a ToNNX initializing lazily).
        final = self._linen_state(module)
        for col, flat in final.items():
            flat.update(initial.get(col, {}))
        for col, flat in initial.items():
            final.setdefault(col, flat)
        self._put(final)
        return out

    @linen.nowrap
    def _apply_call(self, nnx_method: Any, args: tuple, kwargs: dict) -> Any:
        module = self._build_for_apply()
        loaded = self._load(module)
        out = _resolve_method(module, nnx_method)(*args, **kwargs)
        state = self._linen_state(module)
        for col in list(state):
            if not self.is_mutable_collection(col):
                self._check_unchanged(module, col, loaded)
                del state[col]
        self._put(state)
        return out

    # -- building the NNX module -----------------------------------------------------------

    @linen.nowrap
    def _module_kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.kwargs)
        if not self.skip_rng:
            kwargs["rngs"] = nnx.Rngs(**self._rng_keys())
        return kwargs

    @linen.nowrap
    def _rng_keys(self) -> dict[str, Any]:
        keys = linen_rngs_dict(self)
        if "default" not in keys:
            # Linen falls back to `params` for a stream it lacks (`make_rng('dropout')`);
            # NNX falls back to `default`: a default stream drawn from `params` gives NNX
            # modules Linen's fallback. Without any stream, seed 0 keeps them buildable.
            keys["default"] = self.make_rng("params") if self.scope.has_rng("params") else 0
        return keys

    @linen.nowrap
    def _build_for_apply(self) -> nnx.Module:
        if not self.abstract_init:
            return self.nnx_class(*self.args, **self._module_kwargs())
        keys = self._rng_keys()
        kwargs = dict(self.kwargs)
        live_rngs = nnx.Rngs(**keys)

        def construct(rngs: Any) -> nnx.Module:
            if self.skip_rng:
                return self.nnx_class(*self.args, **kwargs)
            return self.nnx_class(*self.args, **kwargs, rngs=rngs)

        return build_abstract(construct, nnx.Rngs(**keys), lambda tag: live_rngs[tag]())

    # -- Linen variables <-> NNX Variables -------------------------------------------------

    @linen.nowrap
    def _load(self, module: nnx.Module) -> dict[tuple, Any]:
        """Writes the Linen values into the module's Variables; returns what was written."""
        given: dict[tuple, Any] = {}
        for col, tree in self.variables.items():
            for path, value in _flatten(tree).items():
                given[(col, *path)] = value
        written: set[tuple] = set()
        for path, variable in _stored_variables(module):
            key = (_collection(variable), *path)
            if key in given:
                value = given[key]
                variable.set_raw_value(
                    value.unbox() if isinstance(value, meta.AxisMetadata) else value
                )
                written.add(key)
        _adopt_into_wrappers(module, {k: v for k, v in given.items() if k not in written})
        # What each Variable holds now, to tell later whether the call replaced it.
        loaded = {
            key: variable.get_raw_value()
            for path, variable in _stored_variables(module)
            if (key := (_collection(variable), *path)) in given
        }
        unknown = sorted("/".join(map(str, k)) for k in given if k not in loaded)
        if unknown:
            warnings.warn(
                f"ToLinen({_class_name(self.nnx_class)}) at {self.scope.path_text}: the "
                f"variables passed to apply() hold paths the NNX module does not have: "
                f"{unknown}. They are ignored.",
                UnknownStateWarning,
                stacklevel=3,
            )
        missing = placeholders(module)
        if missing:
            path, variable = missing[0]
            raise BridgeError(
                LINEN_MISSING_VARIABLE.format(
                    where=f"ToLinen at {self.scope.path_text}",
                    cls=_class_name(self.nnx_class),
                    path="/".join(map(str, path)),
                    col=_collection(variable),
                )
            )
        return loaded

    @linen.nowrap
    def _linen_state(self, module: nnx.Module) -> dict[str, dict[tuple, Any]]:
        state: dict[str, dict[tuple, Any]] = {}
        for path, variable in _stored_variables(module):
            value = (
                self.metadata_fn(variable) if self.metadata_fn is not None else variable.get_value()
            )
            state.setdefault(_collection(variable), {})[path] = value
        return state

    @linen.nowrap
    def _put(self, state: Mapping[str, Mapping[tuple, Any]]) -> None:
        for col, flat in state.items():
            if not self.is_mutable_collection(col):
                continue
            for name, subtree in _unflatten(flat).items():
                self.put_variable(col, name, subtree)

    @linen.nowrap
    def _check_unchanged(self, module: nnx.Module, col: str, loaded: Mapping[tuple, Any]) -> None:
        for path, variable in _stored_variables(module):
            if _collection(variable) != col:
                continue
            key = (col, *path)
            if key in loaded and variable.get_raw_value() is not loaded[key]:
                raise MutabilityError(
                    LINEN_IMMUTABLE.format(
                        where=f"ToLinen({_class_name(self.nnx_class)}) at {self.scope.path_text}",
                        path="/".join(map(str, path)),
                        col=col,
                    )
                )

    # -- NNX methods as Linen methods ------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("_"):
                raise
            nnx_class = self.__dict__.get("nnx_class")
            candidate = getattr(nnx_class, name, None) if nnx_class is not None else None
            if candidate is None or not callable(candidate):
                raise
        method = functools.partial(self.__call__, nnx_method=candidate)
        method.__self__ = self  # type: ignore[attr-defined]
        return method


def _adopt_into_wrappers(module: Any, given: Mapping[tuple, Any]) -> None:
    """Gives uninitialized ``ToNNX`` wrappers inside ``module`` their stored values.

    A ToNNX inside the NNX module has no Variables until it is initialized, so a module
    rebuilt for apply lacks their paths; the stored values under a wrapper's path become
    its Linen state.
    """
    for path, node in nnx.iter_graph(module):
        if not isinstance(node, ToNNX) or node.to_nnx__initialized:
            continue
        prefix = tuple(path)
        per_collection: dict[str, dict[tuple, Any]] = {}
        for key, value in given.items():
            col, rest = key[0], key[1:]
            if len(rest) > len(prefix) and rest[: len(prefix)] == prefix:
                per_collection.setdefault(col, {})[rest[len(prefix) :]] = value
        if per_collection:
            node._adopt(
                linen_vars_to_nnx_attrs({c: _unflatten(f) for c, f in per_collection.items()})
            )


def _class_name(nnx_class: Any) -> str:
    return getattr(nnx_class, "__name__", repr(nnx_class))


def _collection(variable: Variable[Any]) -> str:
    return variable_name_from_type(type(variable), allow_register=True)


def _stored_variables(module: Any) -> list[tuple[tuple, Variable[Any]]]:
    """The module's Variables that live in Linen collections (RNG state does not)."""
    return [
        (tuple(path), node)
        for path, node in nnx.iter_graph(module)
        if isinstance(node, Variable) and not isinstance(node, RngState)
    ]


def to_linen(
    nnx_class: Callable[..., nnx.Module],
    *args: Any,
    metadata_fn: Callable[[Variable[Any]], Any] | None = to_linen_var,
    name: str | None = None,
    skip_rng: bool = False,
    abstract_init: bool = True,
    **kwargs: Any,
) -> ToLinen:
    """``ToLinen(nnx_class, args=args, kwargs=kwargs, ...)`` in one call.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import bridge, nnx, linen as nn
        >>> class Model(nn.Module):
        ...   @nn.compact
        ...   def __call__(self, x):
        ...     return bridge.to_linen(nnx.Linear, x.shape[-1], 2)(x)
        >>> variables = Model().init(jax.random.key(0), jnp.ones((1, 3)))
        >>> jax.tree.map(jnp.shape, variables)
        {'params': {'ToLinen_0': {'bias': (2,), 'kernel': (3, 2)}}}
    """
    return ToLinen(
        nnx_class,
        args=args,
        kwargs=FrozenDict(kwargs),
        skip_rng=skip_rng,
        metadata_fn=metadata_fn,
        abstract_init=abstract_init,
        name=name,
    )


_UNSET: Any = object()


def to_linen_class(
    base_nnx_class: type[nnx.Module],
    base_metadata_fn: Callable[[Variable[Any]], Any] | None = to_linen_var,
    base_skip_rng: bool = False,
    **partial_kwargs: Any,
) -> type[ToLinen]:
    """A ``ToLinen`` subclass whose constructor takes ``base_nnx_class``'s keyword arguments.

    ``partial_kwargs`` are defaults for them. The class can be subclassed and used like
    any Linen module class.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import bridge, nnx
        >>> LinenLinear = bridge.wrappers.to_linen_class(nnx.Linear, in_features=3)
        >>> layer = LinenLinear(out_features=5)
        >>> variables = layer.init(jax.random.key(0), jnp.ones((1, 3)))
        >>> variables['params']['kernel'].shape
        (3, 5)
    """

    def __init__(
        self: ToLinen,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        nnx_class: Callable[..., nnx.Module] | None = None,
        skip_rng: bool | None = None,
        metadata_fn: Callable[[Variable[Any]], Any] | None = _UNSET,
        abstract_init: bool = True,
        parent: Any = _UNSET,
        name: str | None = None,
        **other_kwargs: Any,
    ) -> None:
        linen_kwargs: dict[str, Any] = {"name": name}
        if parent is not _UNSET:
            linen_kwargs["parent"] = parent
        ToLinen.__init__(
            self,
            nnx_class=nnx_class if nnx_class is not None else base_nnx_class,
            args=tuple(args) if args is not None else (),
            kwargs=FrozenDict({**partial_kwargs, **dict(kwargs or {}), **other_kwargs}),
            skip_rng=base_skip_rng if skip_rng is None else skip_rng,
            metadata_fn=base_metadata_fn if metadata_fn is _UNSET else metadata_fn,
            abstract_init=abstract_init,
            **linen_kwargs,
        )

    class ToLinenPartial(ToLinen):
        def __init_subclass__(cls, **kwargs: Any) -> None:
            super().__init_subclass__(**kwargs)
            # Linen makes every subclass a dataclass with a generated __init__; keep ours.
            cls.__init__ = __init__  # type: ignore[method-assign]

    ToLinenPartial.__init__ = __init__  # type: ignore[method-assign]
    ToLinenPartial.__name__ = ToLinenPartial.__qualname__ = f"ToLinen{_class_name(base_nnx_class)}"
    return ToLinenPartial

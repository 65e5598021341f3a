"""Lifted transforms for modules: ``nn.jit``, ``nn.vmap``, ``nn.scan``, ``nn.remat`` ...

Each transform accepts either

* a **Module class**: returns a subclass (named e.g. ``VmapDense``) whose methods (default
  ``__call__``) run under the transform. Inside, an instance of the original class is bound
  to the inner scope, which sits at the same path as the transformed module; or
* a **function or method** taking a module first (``fn(module, *args)``), used as a
  decorator on methods or called with a module: the module's scope is lifted and the
  function runs on a copy of the module bound to the inner scope.

The scope-level work is done by :mod:`._lift`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import jax
from plait.core import FrozenDict

from . import _lift as lift
from . import _lift_flow as lift_flow
from . import _lift_scan as lift_scan
from ._errors import TransformedMethodReturnValueError, TransformTargetError
from ._filters import CollectionFilter, PRNGSequenceFilter
from ._lift import broadcast as broadcast
from ._module import _RESERVED_FIELDS, Module, _get_unbound_fn, _map_over_modules
from ._scope import Scope

Target = TypeVar("Target")
C = TypeVar("C")


# --- building the inner module ------------------------------------------------------------


def _field_values(module: Module) -> dict[str, Any]:
    cache: dict[int, Module] = {}

    def fresh(suffix: str, sub: Module) -> Module:
        if sub._id not in cache:
            cache[sub._id] = sub.clone(parent=None, _deep_clone=cache, _reset_names=True)
        return cache[sub._id]

    attrs = {}
    for f in dataclasses.fields(module):
        if f.init and f.name not in _RESERVED_FIELDS and f.name in module.__dict__:
            attrs[f.name] = _map_over_modules(fresh, module.__dict__[f.name])
    return attrs


def _inner_module(
    module: Module, scope: Scope, cls: type | None = None, export_state: bool = False
) -> Module:
    """A copy of ``module`` (as class ``cls``) bound to the lifted ``scope``."""
    cls = cls or type(module)
    inner = cls(**_field_values(module), parent=scope, name=module.name)
    if export_state:
        outer_state, inner_state = module._state, inner._state
        inner_state.in_compact_method = outer_state.in_compact_method
        inner_state.autoname_cursor = dict(outer_state.autoname_cursor)
    return inner


def _check_output(y: Any, name: str) -> Any:
    for leaf in jax.tree_util.tree_leaves(y, is_leaf=lambda x: isinstance(x, Module)):
        if isinstance(leaf, Module) and leaf.scope is not None:
            raise TransformedMethodReturnValueError(name)
    return y


def _mark_lifted(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn._plait_lifted = True  # type: ignore[attr-defined]
    return fn


def _static_key(*parts: Any) -> Any:
    try:
        hash(parts)
        return parts
    except TypeError:
        return None


def _naming_state(module: Module) -> tuple:
    """What the names created inside a lifted call depend on (part of the jit cache key)."""
    state = module._state
    return (state.in_compact_method, tuple(sorted(state.autoname_cursor.items())))


def _run_on(
    module: Module,
    fn: Callable[..., Any],
    args: tuple,
    kwargs: dict,
    scope: Scope,
    cursors: dict[Any, dict[str, int]],
    key: Any,
) -> Any:
    """Calls ``fn`` on a copy of ``module`` bound to ``scope``; the copy continues the
    auto-naming of ``module`` (recorded in ``cursors[key]`` to be copied back)."""
    inner = _inner_module(module, scope, export_state=True)
    y = inner._call_wrapped_method(fn, args, kwargs)
    cursors[key] = dict(inner._state.autoname_cursor)
    return _check_output(y, getattr(fn, "__name__", "function"))


def _continue_naming(module: Module, cursors: dict[Any, dict[str, int]], key: Any) -> None:
    # The inner function may not have run (a jit cache hit): the names it created were
    # recorded when it was traced.
    if module._state.in_compact_method and key in cursors:
        module._state.autoname_cursor = dict(cursors[key])


# A scope transform takes (scope_fn, key) and returns a lifted scope function; ``key``
# identifies the scope function for caches (jit).
ScopeTransform = Callable[[Callable[..., Any], Any], Callable[..., Any]]


def _normalize_methods(methods: Any) -> dict[str, dict[str, Any]]:
    if methods is None:
        return {"__call__": {}}
    if isinstance(methods, str):
        return {methods: {}}
    if isinstance(methods, Mapping):
        return {name: dict(kw) for name, kw in methods.items()}
    return {name: {} for name in methods}


def _no_setup(self: Module) -> None:
    """setup() runs inside the transform, on the wrapped module."""


def _lift_class(
    cls: type, make: Callable[..., ScopeTransform], prefix: str, methods: Any, **kwargs: Any
) -> type:
    transformed: dict[str, Any] = {}
    for method_name, overrides in _normalize_methods(methods).items():
        if not callable(getattr(cls, method_name, None)):
            raise TransformTargetError(f"{cls.__name__}.{method_name}")
        transform = make(**{**kwargs, **overrides})
        transformed[method_name] = _lift_method(cls, method_name, transform)
    transformed["setup"] = _no_setup
    transformed["__module__"] = cls.__module__
    transformed["__qualname__"] = f"{prefix}{cls.__qualname__}"
    return type(f"{prefix}{cls.__name__}", (cls,), transformed)


def _lift_method(cls: type, method_name: str, transform: ScopeTransform) -> Callable[..., Any]:
    def lifted_method(self: Module, *args: Any, **kwargs: Any) -> Any:
        scope = self._require_scope(f"call the lifted {method_name}")

        def scope_fn(inner_scope: Scope, *args: Any, **kwargs: Any) -> Any:
            inner = _inner_module(self, inner_scope, cls=cls)
            y = getattr(inner, method_name)(*args, **kwargs)
            return _check_output(y, f"{cls.__name__}.{method_name}")

        key = _static_key(cls, method_name, self)
        return transform(scope_fn, key)(scope, *args, **kwargs)

    lifted_method.__name__ = method_name
    lifted_method.__qualname__ = f"{cls.__qualname__}.{method_name}"
    return _mark_lifted(lifted_method)


def _lift_function(fn: Callable[..., Any], transform: ScopeTransform) -> Callable[..., Any]:
    unbound = _get_unbound_fn(fn)
    raw = getattr(unbound, "inner_fun", unbound)
    cursors: dict[Any, dict[str, int]] = {}

    @functools.wraps(unbound)
    def lifted_function(module: Module, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(module, Module):
            raise TransformTargetError(
                f"{getattr(fn, '__name__', fn)} called with {type(module).__name__} as first "
                "argument (a Module is required)"
            )
        scope = module._require_scope(f"call the lifted {getattr(fn, '__name__', 'function')}")
        key = _static_key(raw, type(module), module, _naming_state(module))

        def scope_fn(inner_scope: Scope, *args: Any, **kwargs: Any) -> Any:
            return _run_on(module, raw, args, kwargs, inner_scope, cursors, key)

        y = transform(scope_fn, key)(scope, *args, **kwargs)
        _continue_naming(module, cursors, key)
        return y

    return _mark_lifted(lifted_function)


def _lift(
    target: Any,
    make: Callable[..., ScopeTransform],
    prefix: str,
    methods: Any = None,
    **kwargs: Any,
) -> Any:
    if isinstance(target, type) and issubclass(target, Module):
        return _lift_class(target, make, prefix, methods, **kwargs)
    if callable(target):
        return _lift_function(target, make(**kwargs))
    raise TransformTargetError(target)


def _shift_argnums(argnums: int | Iterable[int]) -> tuple[int, ...]:
    """Module-level argnums count the module as argument 0; scope functions do not."""
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    return tuple(i - 1 for i in nums if i > 0)


# --- transforms of classes / methods --------------------------------------------------


def jit[Target](
    target: Target,
    variables: CollectionFilter = True,
    rngs: PRNGSequenceFilter = True,
    static_argnums: int | Iterable[int] = (),
    static_argnames: str | Iterable[str] = (),
    donate_argnums: int | Iterable[int] = (),
    device: Any = None,
    backend: str | None = None,
    methods: Any = None,
) -> Target:
    """Lifted ``jax.jit``: compiles a module method (variables and RNGs are inputs).

    ``static_argnums``/``donate_argnums`` count the module as argument 0, as in Flax.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import linen as nn
        >>> class Scale(nn.Module):
        ...   @nn.compact
        ...   def __call__(self, x):
        ...     return x * self.param('s', jax.nn.initializers.ones, ())
        >>> JitScale = nn.jit(Scale)
        >>> variables = JitScale().init(jax.random.key(0), 2.0)
        >>> float(JitScale().apply(variables, 2.0))
        2.0
    """

    def make(**kw: Any) -> ScopeTransform:
        return lambda fn, key: lift.jit(
            fn,
            variables=kw.get("variables", variables),
            rngs=kw.get("rngs", rngs),
            static_argnums=_shift_argnums(kw.get("static_argnums", static_argnums)),
            static_argnames=kw.get("static_argnames", static_argnames),
            donate_argnums=_shift_argnums(kw.get("donate_argnums", donate_argnums)),
            device=device,
            backend=backend,
            fn_key=key,
        )

    return _lift(target, make, "Jit", methods)


def checkpoint[Target](
    target: Target,
    variables: CollectionFilter = True,
    rngs: PRNGSequenceFilter = True,
    concrete: bool = False,
    prevent_cse: bool = True,
    static_argnums: int | tuple[int, ...] = (),
    policy: Callable[..., bool] | None = None,
    methods: Any = None,
) -> Target:
    """Lifted ``jax.checkpoint``: recompute the method's activations in the backward pass.

    ``static_argnums`` counts the module as argument 0 (``(2,)`` marks the second
    argument after ``self``).
    """

    def make(**kw: Any) -> ScopeTransform:
        return lambda fn, key: lift.checkpoint(
            fn,
            variables=variables,
            rngs=rngs,
            concrete=concrete,
            prevent_cse=prevent_cse,
            static_argnums=_shift_argnums(kw.get("static_argnums", static_argnums)),
            policy=policy,
        )

    return _lift(target, make, "Checkpoint", methods)


remat = checkpoint


def vmap[Target](
    target: Target,
    variable_axes: Mapping[CollectionFilter, Any] = FrozenDict(),
    split_rngs: Mapping[PRNGSequenceFilter, bool] = FrozenDict(),
    in_axes: Any = 0,
    out_axes: Any = 0,
    axis_size: int | None = None,
    axis_name: str | None = None,
    spmd_axis_name: str | None = None,
    metadata_params: Mapping[Any, Any] = {},  # noqa: B006 - Flax's signature
    methods: Any = None,
) -> Target:
    """Lifted ``jax.vmap``: maps a module over an axis of its inputs (and variables).

    Args:
        target: a Module class or a function/method taking a module first.
        variable_axes: collection filter -> axis of the stacked variables (``None``:
            shared by all instances).
        split_rngs: stream filter -> whether each instance gets its own key (streams not
            listed are shared).
        in_axes, out_axes, axis_size, axis_name, spmd_axis_name: as in ``jax.vmap``.
        metadata_params: passed to boxed metadata (``{nn.PARTITION_NAME: 'batch'}``).
        methods: methods of a class target to transform (default ``['__call__']``).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import linen as nn
        >>> class Scale(nn.Module):
        ...   @nn.compact
        ...   def __call__(self, x):
        ...     return x * self.param('s', jax.nn.initializers.normal(1.0), ())
        >>> Ensemble = nn.vmap(Scale, variable_axes={'params': 0},
        ...                    split_rngs={'params': True}, in_axes=None, axis_size=3)
        >>> variables = Ensemble().init(jax.random.key(0), 1.0)
        >>> variables['params']['s'].shape
        (3,)
    """

    def make(**kw: Any) -> ScopeTransform:
        return lambda fn, key: lift.vmap(
            fn,
            variable_axes=kw.get("variable_axes", variable_axes),
            split_rngs=kw.get("split_rngs", split_rngs),
            in_axes=kw.get("in_axes", in_axes),
            out_axes=kw.get("out_axes", out_axes),
            axis_size=kw.get("axis_size", axis_size),
            axis_name=axis_name,
            spmd_axis_name=spmd_axis_name,
            metadata_params=metadata_params,
        )

    return _lift(target, make, "Vmap", methods)


def scan[Target](
    target: Target,
    variable_axes: Mapping[CollectionFilter, Any] = FrozenDict(),
    variable_broadcast: CollectionFilter = False,
    variable_carry: CollectionFilter = False,
    split_rngs: Mapping[PRNGSequenceFilter, bool] = FrozenDict(),
    in_axes: Any = 0,
    out_axes: Any = 0,
    length: int | None = None,
    reverse: bool = False,
    unroll: int = 1,
    data_transform: Callable[..., Any] | None = None,
    metadata_params: Mapping[Any, Any] = {},  # noqa: B006 - Flax's signature
    methods: Any = None,
    _split_transpose: bool = False,
    check_constancy_invariants: bool = True,
) -> Target:
    """Lifted ``lax.scan``: the target is called as ``(module, carry, *xs) -> (carry, ys)``.

    Args:
        target: a Module class or a function/method taking a module first.
        variable_axes: collection filter -> axis along which variables are stacked (one
            slice per step).
        variable_broadcast: collections shared by all steps (e.g. ``'params'`` for a
            recurrent cell); read-only inside the loop.
        variable_carry: collections threaded from step to step.
        split_rngs: stream filter -> whether each step gets its own key.
        in_axes: axis (or ``nn.broadcast``) of each scanned argument after the carry.
        out_axes, length, reverse, unroll: as in ``lax.scan``.
        data_transform: ``f(variables, rngs) -> (variables, rngs)`` applied inside each
            step (e.g. for sharding annotations).
        metadata_params: passed to boxed metadata (``{nn.PARTITION_NAME: 'layers'}``).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import linen as nn
        >>> class Accumulate(nn.Module):
        ...   @nn.compact
        ...   def __call__(self, c, x):
        ...     w = self.param('w', jax.nn.initializers.ones, ())
        ...     c = c + w * x
        ...     return c, c
        >>> Scan = nn.scan(Accumulate, variable_broadcast='params',
        ...                split_rngs={'params': False})
        >>> xs = jnp.arange(4.0)
        >>> variables = Scan().init(jax.random.key(0), 0.0, xs)
        >>> c, ys = Scan().apply(variables, 0.0, xs)
        >>> ys.tolist()
        [0.0, 1.0, 3.0, 6.0]
    """

    def make(**kw: Any) -> ScopeTransform:
        return lambda fn, key: lift_scan.scan(
            fn,
            variable_axes=kw.get("variable_axes", variable_axes),
            variable_broadcast=kw.get("variable_broadcast", variable_broadcast),
            variable_carry=kw.get("variable_carry", variable_carry),
            split_rngs=kw.get("split_rngs", split_rngs),
            in_axes=kw.get("in_axes", in_axes),
            out_axes=kw.get("out_axes", out_axes),
            length=kw.get("length", length),
            reverse=kw.get("reverse", reverse),
            unroll=unroll,
            data_transform=data_transform,
            metadata_params=metadata_params,
        )

    return _lift(target, make, "Scan", methods)


def remat_scan[Target](
    target: Target,
    lengths: Sequence[int] | None = (),
    policy: Callable[..., bool] | None = None,
    variable_broadcast: CollectionFilter = False,
    variable_carry: CollectionFilter = False,
    variable_axes: Mapping[CollectionFilter, Any] = FrozenDict({True: 0}),
    split_rngs: Mapping[PRNGSequenceFilter, bool] = FrozenDict({True: True}),
) -> Target:
    """Stacks ``prod(lengths)`` copies of a block ``(module, x) -> x`` with nested
    rematerialized scans (memory grows with ``sum(lengths)`` instead of the product).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import linen as nn
        >>> class Block(nn.Module):
        ...   @nn.compact
        ...   def __call__(self, x):
        ...     return x + self.param('b', jax.nn.initializers.ones, ())
        >>> Deep = nn.remat_scan(Block, lengths=(2, 3))
        >>> variables = Deep().init(jax.random.key(0), 0.0)
        >>> variables['params']['b'].shape, float(Deep().apply(variables, 0.0))
        ((2, 3), 6.0)
    """

    def make(**kw: Any) -> ScopeTransform:
        return lambda fn, key: lift_scan.remat_scan(
            fn,
            lengths=tuple(lengths or ()),
            policy=policy,
            variable_broadcast=variable_broadcast,
            variable_carry=variable_carry,
            variable_axes=variable_axes,
            split_rngs=split_rngs,
        )

    return _lift(target, make, "RematScan", None)


def map_variables[Target](
    target: Target,
    mapped_collections: CollectionFilter = True,
    trans_in_fn: Callable[..., Any] = lambda x: x,
    trans_out_fn: Callable[..., Any] = lambda x: x,
    init: bool = False,
    mutable: bool = False,
    rngs: PRNGSequenceFilter = True,
    variables: CollectionFilter = True,
    methods: Any = None,
) -> Target:
    """Lets a module see transformed variables: ``trans_in_fn`` maps the
    ``mapped_collections`` (a dict of collections) on the way in, ``trans_out_fn`` on the
    way out (only when ``mutable`` or, during init, ``init``).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import linen as nn
        >>> class Scale(nn.Module):
        ...   @nn.compact
        ...   def __call__(self, x):
        ...     return x * self.param('s', jax.nn.initializers.ones, ())
        >>> LogScale = nn.map_variables(  # parameters stored in log space
        ...     Scale, 'params', trans_in_fn=lambda v: jax.tree.map(jnp.exp, v),
        ...     trans_out_fn=lambda v: jax.tree.map(jnp.log, v), init=True)
        >>> variables = LogScale().init(jax.random.key(0), 1.0)
        >>> float(variables['params']['s']), float(LogScale().apply(variables, 2.0))
        (0.0, 2.0)
    """

    def make(**kw: Any) -> ScopeTransform:
        return lambda fn, key: lift_flow.map_variables(
            fn,
            mapped_collections,
            trans_in_fn,
            trans_out_fn,
            init=init,
            mutable=mutable,
            rngs=rngs,
            variables=variables,
        )

    return _lift(target, make, "MapVariables", methods)


def add_metadata_axis[Target](
    target: Target,
    variable_axes: Mapping[CollectionFilter, Any] = FrozenDict(),
    metadata_params: dict[Any, Any] = {},  # noqa: B006 - Flax's signature
) -> Target:
    """Adds/removes a metadata axis on boxed variables without a JAX transform (for
    modules run under a plain ``jax.vmap``)."""

    def make(**kw: Any) -> ScopeTransform:
        return lambda fn, key: lift_flow.add_metadata_axis(fn, variable_axes, metadata_params)

    return _lift(target, make, "AddMetadataAxis", None)


def fold_rngs[Target](
    target: Target, variables: CollectionFilter = True, rngs: PRNGSequenceFilter = True
) -> Target:
    """Runs the target on a scope seeded with one fresh key per RNG stream."""

    def make(**kw: Any) -> ScopeTransform:
        return lambda fn, key: lift_flow.fold_rngs(fn, variables=variables, rngs=rngs)

    return _lift(target, make, "FoldRngs", None)


def named_call(class_fn: Callable[..., Any], force: bool = True) -> Callable[..., Any]:
    """Wraps a module method in a ``jax.named_scope`` named ``Class.method`` (profiling)."""

    @functools.wraps(class_fn)
    def wrapper(self: Module, *args: Any, **kwargs: Any) -> Any:
        with jax.named_scope(f"{type(self).__name__}.{class_fn.__name__}"):
            return class_fn(self, *args, **kwargs)

    return wrapper


# --- transforms called with a module ----------------------------------------------------


def _scope_fn(module: Module, fn: Callable[..., Any]) -> Callable[..., Any]:
    raw = _get_unbound_fn(fn)
    raw = getattr(raw, "inner_fun", raw)

    # Every branch / loop function starts naming from the state at the transform's call.
    start = dict(module._state.autoname_cursor)

    def scope_fn(inner_scope: Scope, *args: Any) -> Any:
        cursors: dict[Any, dict[str, int]] = {}
        module._state.autoname_cursor = dict(start)
        y = _run_on(module, raw, args, {}, inner_scope, cursors, "call")
        _continue_naming(module, cursors, "call")
        return y

    return scope_fn


def cond[C](
    pred: Any,
    true_fun: Callable[..., C],
    false_fun: Callable[..., C],
    mdl: Module,
    *operands: Any,
    variables: CollectionFilter = True,
    rngs: PRNGSequenceFilter = True,
) -> C:
    """Lifted ``lax.cond``: ``true_fun(mdl, *operands)`` if ``pred`` else ``false_fun``.

    During init both branches run once so that each can create its variables.
    """
    scope = mdl._require_scope("call nn.cond")
    return lift_flow.cond(
        pred,
        _scope_fn(mdl, true_fun),
        _scope_fn(mdl, false_fun),
        scope,
        *operands,
        variables=variables,
        rngs=rngs,
    )


def switch[C](
    index: Any,
    branches: Sequence[Callable[..., C]],
    mdl: Module,
    *operands: Any,
    variables: CollectionFilter = True,
    rngs: PRNGSequenceFilter = True,
) -> C:
    """Lifted ``lax.switch``: runs ``branches[index](mdl, *operands)``."""
    scope = mdl._require_scope("call nn.switch")
    return lift_flow.switch(
        index,
        [_scope_fn(mdl, b) for b in branches],
        scope,
        *operands,
        variables=variables,
        rngs=rngs,
    )


def while_loop[C](
    cond_fn: Callable[[Any, C], Any],
    body_fn: Callable[[Any, C], C],
    mdl: Module,
    init: C,
    carry_variables: CollectionFilter = False,
    broadcast_variables: CollectionFilter = True,
    split_rngs: Mapping[PRNGSequenceFilter, bool] = FrozenDict(),
) -> C:
    """Lifted ``lax.while_loop``: ``body_fn(mdl, c)`` may update ``carry_variables``."""
    scope = mdl._require_scope("call nn.while_loop")
    return lift_flow.while_loop(
        _scope_fn(mdl, cond_fn),
        _scope_fn(mdl, body_fn),
        scope,
        init,
        carry_variables=carry_variables,
        broadcast_variables=broadcast_variables,
        split_rngs=split_rngs,
    )


def vjp(
    fn: Callable[..., Any],
    mdl: Module,
    *primals: Any,
    has_aux: bool = False,
    reduce_axes: Any = (),
    vjp_variables: CollectionFilter = "params",
    variables: CollectionFilter = True,
    rngs: PRNGSequenceFilter = True,
    multi_scope: bool = False,
) -> tuple:
    """Lifted ``jax.vjp`` of ``fn(mdl, *primals)``: ``(y, vjp_fn[, aux])`` where
    ``vjp_fn(cotangent)`` returns ``(variable_grads, *primal_grads)``.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from plait import linen as nn
        >>> class Scale(nn.Module):
        ...   @nn.compact
        ...   def __call__(self, x):
        ...     return x * self.param('s', jax.nn.initializers.ones, ())
        >>> class Model(nn.Module):
        ...   @nn.compact
        ...   def __call__(self, x):
        ...     y, bwd = nn.vjp(lambda m, x: m(x), Scale(), x)
        ...     return bwd(jnp.ones_like(y))
        >>> variables = Model().init(jax.random.key(0), 3.0)
        >>> grads, x_grad = Model().apply(variables, 3.0)
        >>> float(grads['params']['s']), float(x_grad)
        (3.0, 1.0)
    """
    scope = mdl._require_scope("call nn.vjp")
    return lift_flow.vjp(
        _scope_fn(mdl, fn),
        scope,
        *primals,
        has_aux=has_aux,
        reduce_axes=reduce_axes,
        vjp_variables=vjp_variables,
        variables=variables,
        rngs=rngs,
    )


def jvp(
    fn: Callable[..., Any],
    mdl: Module,
    primals: Any,
    tangents: Any,
    variable_tangents: Any,
    variables: CollectionFilter = True,
    rngs: PRNGSequenceFilter = True,
) -> tuple:
    """Lifted ``jax.jvp`` of ``fn(mdl, *primals)`` with tangents for whole collections
    (``variable_tangents={'params': ...}``); returns ``(y, y_tangent)``."""
    scope = mdl._require_scope("call nn.jvp")
    return lift_flow.jvp(
        _scope_fn(mdl, fn),
        scope,
        primals,
        tangents,
        variable_tangents,
        variables=variables,
        rngs=rngs,
    )


def value_and_grad(
    fn: Callable[..., Any],
    mdl: Module,
    *primals: Any,
    has_aux: bool = False,
    reduce_axes: Any = (),
    variables: CollectionFilter = True,
    rngs: PRNGSequenceFilter = True,
) -> tuple:
    """``(value, grads)`` of ``fn(mdl, *primals)`` w.r.t. the primals only (a tuple, one
    entry per primal); ``((value, aux), grads)`` with ``has_aux``."""
    scope = mdl._require_scope("call nn.value_and_grad")
    return lift_flow.value_and_grad(
        _scope_fn(mdl, fn),
        scope,
        *primals,
        has_aux=has_aux,
        reduce_axes=reduce_axes,
        variables=variables,
        rngs=rngs,
    )


def grad(
    fn: Callable[..., Any],
    mdl: Module,
    *primals: Any,
    has_aux: bool = False,
    reduce_axes: Any = (),
    variables: CollectionFilter = True,
    rngs: PRNGSequenceFilter = True,
) -> Any:
    """Gradients of ``fn(mdl, *primals)`` w.r.t. the primals (``(grads, aux)`` with
    ``has_aux``)."""
    out = value_and_grad(
        fn, mdl, *primals, has_aux=has_aux, reduce_axes=reduce_axes, variables=variables, rngs=rngs
    )
    if has_aux:
        (_, aux), grads = out
        return grads, aux
    return out[1]


def custom_vjp(
    fn: Callable[..., Any],
    forward_fn: Callable[..., Any],
    backward_fn: Callable[..., Any],
    grad_vars: CollectionFilter = "params",
    nondiff_argnums: Sequence[int] = (),
) -> Callable[..., Any]:
    """Lifted ``jax.custom_vjp``: returns ``f(mdl, *args)``.

    ``forward_fn(mdl, *args) -> (y, residuals)`` and ``backward_fn(residuals, g) ->
    (grad_vars_grads, *arg_grads)`` where ``grad_vars_grads`` is a dict of collections.
    """

    def call(mdl: Module, *args: Any) -> Any:
        scope = mdl._require_scope("call a custom_vjp function")
        lifted = lift_flow.custom_vjp(
            _scope_fn(mdl, fn),
            _scope_fn(mdl, forward_fn),
            backward_fn,
            grad_vars=grad_vars,
            nondiff_argnums=nondiff_argnums,
        )
        return lifted(scope, *args)

    return call

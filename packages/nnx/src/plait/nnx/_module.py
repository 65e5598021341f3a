"""``Module``: the base class of plait.nnx layers and models.

A Module is a core ``Object`` (a graph node with reference semantics) plus the
conveniences of Flax NNX: ``sow`` / ``perturb`` for intermediates, ``iter_modules``,
``set_attributes`` with ``train()`` / ``eval()``, and the functional views ``view`` /
``with_attributes``. Every subclass ``__call__`` is wrapped once, at class creation, in a
push/pop of the call stack that error messages use to name a module's path, and that
``capture`` and ``tabulate`` use to see which modules run.
"""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
from plait.core import (
    Intermediate,
    Object,
    Perturbation,
    State,
    Variable,
    clone,
    iter_graph,
    to_predicate,
    variable_type_from_name,
)

from . import _callpath
from ._errors import AttributeNotFoundError
from ._repr import format_object

A = TypeVar("A")
M = TypeVar("M", bound="Module")


def tuple_reduce(xs, x):
    """Default ``sow`` reduction: append ``x`` to the tuple ``xs``."""
    return (*xs, x)


def tuple_init():
    """Default ``sow`` initial value: the empty tuple."""
    return ()


# ---------------------------------------------------------------------------------------
# configuration read by sow / perturb
# ---------------------------------------------------------------------------------------

_capture_local = threading.local()


def _capture_stack() -> list[_CaptureFrame]:
    frames = getattr(_capture_local, "frames", None)
    if frames is None:
        frames = _capture_local.frames = []
    return frames


class _CaptureFrame:
    """What one ``capture`` call collects: sown values by module path, off the modules."""

    __slots__ = ("var_types", "method_outputs", "paths", "init", "values")

    def __init__(
        self,
        var_types: tuple[type, ...],
        method_outputs: type | None,
        paths: dict[int, tuple],
        init: dict[tuple, Any],
    ):
        self.var_types = var_types
        self.method_outputs = method_outputs
        self.paths = paths
        self.init = init
        self.values: dict[tuple, tuple[type, Any]] = {}

    def key(self, module: Any, name: str) -> tuple:
        path = self.paths.get(id(module))
        if path is None:  # a module made during the call: not reachable from the arguments
            path = (f"<{type(module).__name__}>",)
        return (*path, name)

    def sow(self, module, variable_type, name, value, reduce_fn, init_fn) -> None:
        key = self.key(module, name)
        if key in self.values:
            previous_type, previous = self.values[key]
            if previous_type is not variable_type:
                raise TypeError(
                    f"{type(module).__name__}.sow(): '{name}' was sown as "
                    f"{previous_type.__name__} and now as {variable_type.__name__}.\nFix: use "
                    "one Variable type per sown name."
                )
        elif key in self.init:
            previous = self.init[key]
        else:
            previous = init_fn()
        self.values[key] = (variable_type, reduce_fn(previous, value))


def _sow_is_noop(capture_noop: bool | None) -> bool:
    """True when sow/perturb must do nothing: capture_noop set and no capture() active."""
    if capture_noop is None:
        from ._config import config

        capture_noop = config.nnx_sow_capture_noop
    return bool(capture_noop) and not _capture_stack()


def _resolve_type(variable_type: type | str) -> type:
    if isinstance(variable_type, str):
        return variable_type_from_name(variable_type, allow_register=True)
    return variable_type


# ---------------------------------------------------------------------------------------
# call tracking
# ---------------------------------------------------------------------------------------


def _track_calls(call: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(call)
    def tracked_call(self, *args, **kwargs):
        calls = _callpath.stack()
        calls.append(self)
        entered = (
            [(o, o.enter(self, args, kwargs)) for o in tuple(_call_observers)]
            if _call_observers
            else ()
        )
        try:
            out = call(self, *args, **kwargs)
        finally:
            calls.pop()
        for observer, token in entered:
            observer.exit(token, out)
        frames = _capture_stack()
        if frames and frames[-1].method_outputs is not None:
            self.sow(frames[-1].method_outputs, "__call__", out)
        return out

    tracked_call._plait_tracked = True  # type: ignore[attr-defined]
    return tracked_call


# Objects with ``enter(module, args, kwargs) -> token`` and ``exit(token, output)``,
# told about every Module ``__call__``; tabulate registers one while it traces a model.
_call_observers: list[Any] = []


class Module(Object):
    """Base class of layers and models.

    Build sub-modules and Variables as attributes in ``__init__``; define ``__call__``
    (or any method) for the forward pass. Attributes keep Python reference semantics:
    assigning the same Variable or sub-module twice shares it.

    Example:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> class Affine(nnx.Module):
      ...   def __init__(self, din, dout, *, rngs: nnx.Rngs):
      ...     self.w = nnx.Param(rngs.params.normal((din, dout)))
      ...     self.b = nnx.Param(jnp.zeros((1, dout)))
      ...   def __call__(self, x):
      ...     return x @ self.w + self.b
      >>> model = Affine(2, 3, rngs=nnx.Rngs(0))
      >>> model(jnp.ones((4, 2))).shape
      (4, 3)
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        call = cls.__dict__.get("__call__")
        if call is not None and not getattr(call, "_plait_tracked", False):
            cls.__call__ = _track_calls(call)  # type: ignore[method-assign]

    def __repr__(self) -> str:
        return format_object(self)

    # -- intermediates -------------------------------------------------------------------

    def sow(
        self,
        variable_type: type[Variable] | str,
        name: str,
        value: Any,
        reduce_fn: Callable[[Any, Any], Any] = tuple_reduce,
        init_fn: Callable[[], Any] = tuple_init,
        capture_noop: bool | None = None,
    ) -> bool:
        """Stores ``value`` in the attribute ``name`` as a Variable of ``variable_type``.

        The first call sets ``reduce_fn(init_fn(), value)``, later calls
        ``reduce_fn(previous, value)``; by default the values accumulate in a tuple.
        Returns False (and stores nothing) when sowing is switched off: ``capture_noop``
        (default: the flag ``nnx_sow_capture_noop``) is true outside ``nnx.capture``.

        Example:
          >>> import jax.numpy as jnp
          >>> from plait import nnx
          >>> class Block(nnx.Module):
          ...   def __call__(self, x):
          ...     self.sow(nnx.Intermediate, "hidden", x * 2)
          ...     return x
          >>> block = Block()
          >>> _ = block(jnp.ones(2)); _ = block(jnp.ones(2))
          >>> len(block.hidden[...])
          2
        """
        variable_type = _resolve_type(variable_type)
        frames = _capture_stack()
        if frames and issubclass(variable_type, frames[-1].var_types):
            frames[-1].sow(self, variable_type, name, value, reduce_fn, init_fn)
            return True
        if _sow_is_noop(capture_noop):
            return False
        if name in vars(self):
            variable = getattr(self, name)
            if not isinstance(variable, Variable):
                raise TypeError(
                    f"{type(self).__name__}.sow(): attribute '{name}' holds a "
                    f"{type(variable).__name__}, not a Variable.\nFix: sow under a name that "
                    "is not used by another attribute."
                )
            if type(variable) is not variable_type:
                raise TypeError(
                    f"{type(self).__name__}.sow(): attribute '{name}' is a "
                    f"{type(variable).__name__}, but this call sows a "
                    f"{variable_type.__name__}.\nFix: use one Variable type per sown name."
                )
            variable.set_value(reduce_fn(variable.get_value(), value))
        else:
            setattr(self, name, variable_type(reduce_fn(init_fn(), value)))
        return True

    def perturb(
        self,
        name: str,
        value: Any,
        variable_type: str | type[Variable] = Perturbation,
        capture_noop: bool | None = None,
    ):
        """Adds a zero-valued Variable to ``value`` so its gradient is ``d loss / d value``.

        The first call creates ``name`` holding zeros shaped like ``value``; take
        gradients with respect to ``Perturbation`` (e.g. with
        ``nnx.DiffState(0, nnx.Any(nnx.Param, nnx.Perturbation))``) to read the
        gradient of the intermediate value.
        """
        if _sow_is_noop(capture_noop):
            return value
        variable_type = _resolve_type(variable_type)
        if name not in vars(self):
            setattr(self, name, variable_type(jax.tree.map(jnp.zeros_like, value)))
        variable = getattr(self, name)
        if not isinstance(variable, variable_type):
            raise TypeError(
                f"{type(self).__name__}.perturb(): attribute '{name}' is a "
                f"{type(variable).__name__}, expected {variable_type.__name__}.\nFix: use a "
                "name that is not taken by another attribute."
            )
        return jax.tree.map(lambda p, v: p + v, variable.get_value(), value)

    # -- traversal -------------------------------------------------------------------------

    def iter_modules(self) -> Iterator[tuple[tuple, Module]]:
        """Yields ``(path, module)`` for every Module in this one's graph, itself last."""
        return iter_modules(self)

    def iter_children(self) -> Iterator[tuple[Any, Module]]:
        """Yields ``(attribute name, module)`` for the direct sub-modules."""
        return iter_module_children(self)

    # -- attributes ------------------------------------------------------------------------

    def set_attributes(
        self,
        *filters: Any,
        raise_if_not_found: bool = True,
        graph: bool | None = None,
        **attributes: Any,
    ) -> None:
        """Sets ``attributes`` on every sub-module (itself included) that already has them.

        ``filters`` restrict the modules (e.g. ``nnx.Dropout`` or a path predicate).
        With ``raise_if_not_found`` an attribute that no selected module has is an error.

        Example:
          >>> from plait import nnx
          >>> class Gate(nnx.Module):
          ...   def __init__(self):
          ...     self.deterministic = False
          >>> class Model(nnx.Module):
          ...   def __init__(self):
          ...     self.gate = Gate()
          >>> model = Model()
          >>> model.set_attributes(deterministic=True)
          >>> model.gate.deterministic
          True
        """
        _set_attributes(
            self, filters, attributes, raise_if_not_found=raise_if_not_found, graph=graph
        )

    def train(self, **attributes: Any) -> None:
        """Training mode: ``deterministic=False``, ``use_running_average=False``."""
        self.set_attributes(
            deterministic=False,
            use_running_average=False,
            **attributes,
            raise_if_not_found=False,
        )

    def eval(self, **attributes: Any) -> None:
        """Evaluation mode: ``deterministic=True``, ``use_running_average=True``."""
        self.set_attributes(
            deterministic=True,
            use_running_average=True,
            **attributes,
            raise_if_not_found=False,
        )


# ---------------------------------------------------------------------------------------
# functions over module graphs
# ---------------------------------------------------------------------------------------


def iter_modules(module: Module, /, *, graph: bool | None = None) -> Iterator[tuple[tuple, Module]]:
    """Yields ``(path, module)`` for every Module reachable from ``module``, itself last.

    Shared sub-modules are yielded once, at their first path.
    """
    for path, node in _iter_graph(module, graph):
        if isinstance(node, Module):
            yield tuple(path), node


def iter_module_children(node: Any, /, *, graph: bool | None = None) -> Iterator[tuple[Any, Any]]:
    """Yields ``(key, module)`` for the Modules directly inside ``node``.

    A Module inside a plain list/dict attribute is yielded with its full key path below
    ``node`` (e.g. ``('layers', 0)``) collapsed to the first non-pytree hop.
    """
    for path, child in _iter_graph(node, graph):
        if isinstance(child, Module) and child is not node and _is_direct(node, path, child):
            yield (path[0] if len(path) == 1 else tuple(path)), child


def _is_direct(root: Any, path: tuple, child: Any) -> bool:
    """True when no Module other than ``root`` sits on ``path`` above ``child``."""
    node = root
    for key in path[:-1]:
        node = node[key] if not isinstance(node, Object) else getattr(node, key)
        if isinstance(node, Module):
            return False
    return True


def _iter_graph(node: Any, graph: bool | None) -> Iterator[tuple[tuple, Any]]:
    if graph is None:
        yield from iter_graph(node)
    else:
        yield from iter_graph(node, graph=graph)


def _set_attributes(
    root: Any,
    filters: tuple,
    attributes: dict[str, Any],
    *,
    raise_if_not_found: bool,
    graph: bool | None,
) -> None:
    remaining = set(attributes)
    predicates = [to_predicate(f) for f in (filters or (True,))]
    for path, module in list(iter_modules(root, graph=graph)):
        if not any(p(path, module) for p in predicates):
            continue
        for name, value in attributes.items():
            if hasattr(module, name):
                remaining.discard(name)
                setattr(module, name, value)
    if remaining and raise_if_not_found:
        raise AttributeNotFoundError(
            f"set_attributes(): no selected module of {type(root).__name__} has the "
            f"attribute(s) {sorted(remaining)}.\nFix: check the spelling, widen the filters, "
            "or pass raise_if_not_found=False to skip missing attributes."
        )


def with_attributes(  # noqa: UP047 - Flax-style TypeVar generics
    node: A,
    /,
    *,
    only: Any = ...,
    raise_if_not_found: bool = True,
    graph: bool | None = None,
    **attributes: Any,
) -> A:
    """A copy of ``node`` whose modules selected by ``only`` have ``attributes`` set.

    The copy has new Module objects but shares every Variable with ``node`` (a change of
    a parameter value shows in both); ``node`` itself is not modified.

    Example:
      >>> from plait import nnx
      >>> class Gate(nnx.Module):
      ...   def __init__(self):
      ...     self.deterministic = False
      >>> gate = Gate()
      >>> nnx.with_attributes(gate, deterministic=True).deterministic, gate.deterministic
      (True, False)
    """
    copy = _shallow_copy(node, graph)
    _set_attributes(
        copy, (only,), attributes, raise_if_not_found=raise_if_not_found, graph=graph
    )
    return copy


def _shallow_copy(node: A, graph: bool | None) -> A:  # noqa: UP047 - Flax-style TypeVar generics
    """New graph nodes, same Variables."""
    if graph is None:
        return clone(node, variables=False)
    return clone(node, variables=False, graph=graph)


def _view_parameters(module: Module) -> dict[str, inspect.Parameter] | None:
    set_view = getattr(module, "set_view", None)
    if set_view is None or not callable(set_view):
        return None
    return {
        name: p
        for name, p in inspect.signature(set_view).parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def view(  # noqa: UP047 - Flax-style TypeVar generics
    node: A,
    /,
    *,
    only: Any = ...,
    raise_if_not_found: bool = True,
    graph: bool | None = None,
    **kwargs: Any,
) -> A:
    """A copy of ``node`` in another mode, set through each module's ``set_view``.

    Every module selected by ``only`` that defines ``set_view(...)`` is called with the
    keywords of ``kwargs`` its ``set_view`` accepts. The copy shares all Variables with
    ``node``; ``node`` keeps its mode. Keywords that no ``set_view`` accepts are an error
    unless ``raise_if_not_found=False``.

    Example:
      >>> from plait import nnx
      >>> class Noise(nnx.Module):
      ...   def __init__(self):
      ...     self.deterministic = False
      ...   def set_view(self, deterministic: bool | None = None):
      ...     if deterministic is not None:
      ...       self.deterministic = deterministic
      >>> model = nnx.Sequential(Noise())
      >>> eval_model = nnx.view(model, deterministic=True)
      >>> eval_model.layers[0].deterministic, model.layers[0].deterministic
      (True, False)
    """
    copy = _shallow_copy(node, graph)
    predicate = to_predicate(only)
    unused = set(kwargs)
    for path, module in list(iter_modules(copy, graph=graph)):
        if not predicate(path, module):
            continue
        params = _view_parameters(module)
        if params is None:
            continue
        accepted = {k: v for k, v in kwargs.items() if k in params}
        if accepted:
            module.set_view(**accepted)  # type: ignore[attr-defined]
            unused -= set(accepted)
    if unused and raise_if_not_found:
        raise AttributeNotFoundError(
            f"view(): no set_view() in {type(node).__name__} accepts {sorted(unused)}.\n"
            f"{view_info(node, only=only, graph=graph)}\n"
            "Fix: use one of the keywords above, or pass raise_if_not_found=False."
        )
    return copy


def _parameter_text(p: inspect.Parameter) -> str:
    text = p.name
    if p.annotation is not p.empty:
        annotation = p.annotation
        text += ": " + (annotation if isinstance(annotation, str) else inspect.formatannotation(annotation))
    if p.default is not p.empty:
        text += f" = {p.default!r}"
    return text


def view_info(node: Module, /, *, only: Any = ..., graph: bool | None = None) -> str:
    """Lists the keywords ``nnx.view`` accepts for ``node``, per module type.

    Example:
      >>> from plait import nnx
      >>> class Noise(nnx.Module):
      ...   def set_view(self, deterministic: bool | None = None):
      ...     '''Switches the noise off.'''
      >>> print(nnx.view_info(nnx.Sequential(Noise())))
      View options for Sequential:
        Noise.set_view(deterministic: bool | None = None)
          Switches the noise off.
    """
    predicate = to_predicate(only)
    lines = [f"View options for {type(node).__name__}:"]
    seen: set[type] = set()
    for path, module in iter_modules(node, graph=graph):
        if type(module) in seen or not predicate(path, module):
            continue
        params = _view_parameters(module)
        if not params:
            continue
        seen.add(type(module))
        signature = ", ".join(_parameter_text(p) for p in params.values())
        lines.append(f"  {type(module).__name__}.set_view({signature})")
        doc = inspect.getdoc(module.set_view)  # type: ignore[attr-defined]
        if doc:
            lines.append("    " + doc.splitlines()[0])
    if len(lines) == 1:
        lines.append("  (no module defines set_view)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# capture
# ---------------------------------------------------------------------------------------


def capture(
    fn: Callable[..., Any] | type[Variable],
    *var_types: type[Variable],
    init: State | None = None,
    method_outputs: type[Variable] | None = None,
):
    """Runs ``fn`` and returns ``(output, captured)``: the values sown while it ran.

    While ``fn`` runs, ``sow`` calls of ``var_types`` (default ``Intermediate``, and
    subclasses) are collected instead of being stored on the modules, so the modules are
    left unchanged and repeated calls do not accumulate; ``captured`` is a State keyed by
    the path of the sowing module (found from the Module arguments) plus the sown name.
    ``init`` is a previously captured State whose values start the reductions. With
    ``method_outputs=T``, every Module ``__call__`` output is also sown as a ``T`` named
    ``"__call__"``. Inside ``capture``, ``sow`` works even when the flag
    ``nnx_sow_capture_noop`` is set. Used as ``@nnx.capture(nnx.Intermediate)`` when the
    first argument is a Variable type. Captures nest; the innermost one collects.

    Example:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> class Block(nnx.Module):
      ...   def __call__(self, x):
      ...     self.sow(nnx.Intermediate, "double", x * 2)
      ...     return x + 1
      >>> y, captured = nnx.capture(lambda m, x: m(x))(Block(), jnp.ones(2))
      >>> captured["double"][...][0].tolist()
      [2.0, 2.0]
    """
    if isinstance(fn, type) and issubclass(fn, Variable):
        types = (fn, *var_types)
        return lambda f: capture(f, *types, init=init, method_outputs=method_outputs)
    types = tuple(var_types) or (Intermediate,)
    if method_outputs is not None and method_outputs not in types:
        types = (*types, method_outputs)

    @functools.wraps(fn)
    def captured_fn(*args, **kwargs):
        paths: dict[int, tuple] = {}
        for arg in (*args, *kwargs.values()):
            if isinstance(arg, Module):
                for path, module in iter_modules(arg):
                    paths.setdefault(id(module), path)
        initial: dict[tuple, Any] = {}
        if init is not None:
            from plait.core import to_flat_state

            initial = {
                tuple(p): (v.get_value() if isinstance(v, Variable) else v)
                for p, v in to_flat_state(init)
            }
        frame = _CaptureFrame(types, method_outputs, paths, initial)
        frames = _capture_stack()
        frames.append(frame)
        try:
            out = fn(*args, **kwargs)
        finally:
            frames.pop()
        captured = {key: vtype(value) for key, (vtype, value) in frame.values.items()}
        return out, State.from_flat_path(captured)

    return captured_fn

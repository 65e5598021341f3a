"""Exception classes of plait.linen.

The class names follow ``flax.errors`` so that code catching Flax's errors by name ports
unchanged. Every message says what went wrong, where (the module path such as
``/Encoder/Dense_0`` and the variable name), what was expected versus what was found, and
how to fix it.
"""

from __future__ import annotations

from typing import Any


def _path_text(path: tuple[str, ...] | str) -> str:
    if isinstance(path, str):
        return path or "/"
    return "/" + "/".join(path)


class LinenError(Exception):
    """Base class of every plait.linen error (Flax: ``FlaxError``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


FlaxError = LinenError


class ScopeParamShapeError(LinenError):
    """A parameter found in ``variables`` does not have the shape its initializer gives."""

    def __init__(self, param_name: str, scope_path: Any, value_shape: Any, init_shape: Any):
        self.param_name = param_name
        self.scope_path = scope_path
        super().__init__(
            f'Parameter "{param_name}" in module "{_path_text(scope_path)}" has shape '
            f"{tuple(value_shape)} in the variables passed to apply(), but its initializer "
            f"produces shape {tuple(init_shape)}.\n"
            "Fix: the module's hyper-parameters (e.g. features) or the input shape differ "
            "from the ones used by init(); re-run init() with the current configuration, or "
            "load parameters that were created for it."
        )


class ScopeParamNotFoundError(LinenError):
    """``param`` asked for a parameter that is missing while ``params`` is immutable."""

    def __init__(self, param_name: str, scope_path: Any):
        self.param_name = param_name
        self.scope_path = scope_path
        super().__init__(
            f'No parameter named "{param_name}" in module "{_path_text(scope_path)}", and '
            'the "params" collection is immutable here, so it cannot be created.\n'
            "Fix: pass the variables returned by init() for this same module to apply(); if "
            "this parameter is new, re-run init(), or make params mutable "
            "(apply(..., mutable=['params']))."
        )


class ScopeVariableNotFoundError(LinenError):
    """A variable is missing from an immutable (or init-less) collection."""

    def __init__(self, name: str, col: str, scope_path: Any):
        self.name = name
        self.col = col
        self.scope_path = scope_path
        super().__init__(
            f'No variable named "{name}" in collection "{col}" of module '
            f'"{_path_text(scope_path)}", and it cannot be created here (the collection is '
            "immutable or no init function was given).\n"
            f"Fix: pass the variables returned by init(), or make the collection mutable "
            f"(apply(..., mutable=['{col}']))."
        )


class ScopeCollectionNotFound(LinenError):
    """A whole collection is missing from ``variables``."""

    def __init__(self, col_name: str, var_name: str, scope_path: Any):
        self.col_name = col_name
        self.var_name = var_name
        self.scope_path = scope_path
        super().__init__(
            f'Module "{_path_text(scope_path)}" reads variable "{var_name}" of collection '
            f'"{col_name}", but the variables passed in have no "{col_name}" collection.\n'
            f"Fix: pass every collection returned by init() (e.g. "
            f"apply({{'params': params, '{col_name}': ...}}, x)), or make it mutable so it "
            f"is created (apply(..., mutable=['{col_name}']))."
        )


class ModifyScopeVariableError(LinenError):
    """A write to a variable of an immutable collection."""

    def __init__(self, col: str, variable_name: str, scope_path: Any):
        self.col = col
        self.variable_name = variable_name
        self.scope_path = scope_path
        super().__init__(
            f'Cannot update variable "{variable_name}" in "{_path_text(scope_path)}": '
            f'collection "{col}" is immutable in this call.\n'
            f"Fix: mark it mutable, e.g. apply(variables, x, mutable=['{col}']) which then "
            "returns (output, updated_variables)."
        )


class ImmutableVariableError(LinenError):
    """A write to an immutable variable handle."""


class InvalidRngError(LinenError):
    """An RNG stream is missing or an RNG value is not a PRNG key."""

    def __init__(self, msg: str):
        super().__init__(msg)


class InvalidScopeError(LinenError):
    """A scope was used after the apply/init call that created it returned."""

    def __init__(self, scope_name: str):
        super().__init__(
            f'The scope of module "{scope_name}" is no longer valid: it belongs to an '
            "init()/apply() call that has already returned.\n"
            "Fix: do the work inside the function passed to apply() (method=...), or use "
            "module.bind(variables) to get a bound module that stays usable."
        )


class ApplyScopeInvalidVariablesTypeError(LinenError):
    """``variables`` given to apply/bind is not a mapping."""

    def __init__(self, got: Any = None):
        super().__init__(
            "The first argument of apply()/bind() must be a mapping of collections, e.g. "
            "{'params': {...}}, but got a value of type "
            f"{type(got).__name__}.\n"
            "Fix: pass the dict returned by init(), e.g. model.apply(variables, x)."
        )


class ApplyScopeInvalidVariablesStructureError(LinenError):
    """A collection in ``variables`` is not itself a mapping."""

    def __init__(self, variables: Any, col: str | None = None):
        detail = f" Collection {col!r} holds a {type(variables[col]).__name__}." if col else ""
        super().__init__(
            "The variables passed to apply()/bind() must be a dict of collections, each a "
            "dict (e.g. {'params': {'Dense_0': {'kernel': ...}}})." + detail + "\n"
            "Fix: if you passed the params alone, wrap them: "
            "model.apply({'params': params}, x)."
        )


class ApplyModuleInvalidMethodError(LinenError):
    """``method`` given to apply/init is neither callable nor the name of one."""

    def __init__(self, method: Any):
        super().__init__(
            f"Cannot call method {method!r}: it is not a callable and not the name of a "
            "method of the module.\n"
            "Fix: pass a method name (method='encode'), a function (method=Model.encode) or "
            "a callable taking the module as first argument."
        )


class NameInUseError(LinenError):
    """Two submodules / variables claim the same name in one module."""

    def __init__(self, key_type: str, value: str, module_name: str):
        self.key_type = key_type
        self.value = value
        super().__init__(
            f'Could not create {key_type} "{value}" in module {module_name}: the name is '
            "already used by another submodule or variable of this module.\n"
            "Fix: give each submodule/variable a distinct name (name=...), or reuse the "
            "existing submodule instance to share its parameters."
        )


class AssignSubModuleError(LinenError):
    """A submodule was created outside ``setup`` and outside a ``@compact`` method."""

    def __init__(self, cls: str):
        super().__init__(
            f"Submodule {cls} must be defined in setup() or in a method wrapped in "
            "@compact.\n"
            "Fix: create it in setup() (self.layer = ...) or decorate the method that "
            "creates it with @nn.compact."
        )


class SetAttributeInModuleSetupError(LinenError):
    """setup() reassigned a dataclass field."""

    def __init__(self, attr_name: str = "", module_cls: str = ""):
        super().__init__(
            f"setup() of {module_cls or 'a module'} assigns to {attr_name or 'a field'}, which "
            "is a dataclass field (a constructor argument); fields are frozen.\n"
            "Fix: store the derived value under another attribute name, or pass it to the "
            "constructor / use module.clone(field=value)."
        )


class SetAttributeFrozenModuleError(LinenError):
    """An attribute was set on a module outside ``setup``."""

    def __init__(self, module_cls: str, attr_name: str, attr_val: Any):
        super().__init__(
            f"Cannot set attribute {attr_name}={attr_val!r} on module {module_cls}: a module "
            "is frozen outside setup().\n"
            "Fix: assign attributes in setup(), or make a modified copy with "
            f"module.clone({attr_name}=...)."
        )


class MultipleMethodsCompactError(LinenError):
    """More than one method of a class is decorated with ``@compact``."""

    def __init__(self, cls_name: str = "", names: Any = ()):
        super().__init__(
            f"Only one method of a Module may be wrapped in @compact, but {cls_name} has "
            f"{list(names)}.\n"
            "Fix: keep @compact on one method (usually __call__), define submodules in "
            "setup(), or use @nn.compact_name_scope for the other methods."
        )


class ReservedModuleAttributeError(LinenError):
    """A Module subclass declares ``parent`` or ``name`` as a field."""

    def __init__(self, annotations: Any):
        super().__init__(
            f"Module fields {sorted(annotations)} use reserved names: 'parent' and 'name' "
            "are added to every Module by plait.linen.\n"
            "Fix: rename these fields."
        )


class CallCompactUnboundModuleError(LinenError):
    """A ``@compact`` method was called on an unbound module."""

    def __init__(self, cls_name: str = "", method: str = "__call__"):
        super().__init__(
            f"Cannot call the @compact method {cls_name}.{method} of an unbound module: it "
            "has no variables.\n"
            "Fix: call it through module.apply(variables, ...) / module.init(rng, ...), or "
            "bind it first: module.bind(variables)."
        )


class CallSetupUnboundModuleError(LinenError):
    """setup() was called on an unbound module."""

    def __init__(self) -> None:
        super().__init__(
            "Cannot run setup() of an unbound module.\n"
            "Fix: bind the module (module.bind(variables)) or use apply()/init()."
        )


class CallUnbindOnUnboundModuleError(LinenError):
    """``unbind`` on a module that is not bound."""

    def __init__(self) -> None:
        super().__init__(
            "Cannot unbind a module that is not bound.\n"
            "Fix: only call unbind() on modules returned by bind() or inside apply()."
        )


class CallShareScopeOnUnboundModuleError(LinenError):
    """``share_scope`` on an unbound module."""

    def __init__(self) -> None:
        super().__init__(
            "nn.share_scope() needs bound modules (call it inside setup() of a bound "
            "module).\nFix: call share_scope from setup(), after assigning the submodule."
        )


class InvalidInstanceModuleError(LinenError):
    """A Module method was called on the class rather than an instance."""

    def __init__(self) -> None:
        super().__init__(
            "A Module method was called on the class instead of an instance.\n"
            "Fix: construct the module first, e.g. Model(...).init(rng, x)."
        )


class TransformTargetError(LinenError):
    """A lifted transform was given something that is not a Module class or function."""

    def __init__(self, target: Any):
        super().__init__(
            f"Lifted transforms expect a Module subclass or a function taking a module as "
            f"first argument, but got {target!r}.\n"
            "Fix: pass the class (nn.vmap(nn.Dense, ...)) or a method/function."
        )


class TransformedMethodReturnValueError(LinenError):
    """A lifted method returned a bound module (which cannot leave the transform)."""

    def __init__(self, name: str):
        super().__init__(
            f"The lifted method {name} returned a bound Module; modules cannot be returned "
            "from inside a transform.\nFix: return arrays (or unbound modules) only."
        )


class LiftedVariableLayoutError(LinenError):
    """The variables inside a lifted transform do not fit the transform's axes."""


class InvalidFilterError(LinenError):
    """A collection filter has an unsupported type."""

    def __init__(self, filter_like: Any):
        super().__init__(
            f"Invalid collection filter {filter_like!r} of type {type(filter_like).__name__}.\n"
            "Fix: use True/False, a collection name, a list of names or nn.DenyList(...)."
        )


class LazyInitError(LinenError):
    """lazy_init needed a concrete value that only exists with real inputs."""

    def __init__(self, partial_val: Any):
        super().__init__(
            f"lazy_init() could not compute a variable without concrete inputs ({partial_val}).\n"
            "Fix: call init() with real arrays instead."
        )


class PartitioningUnspecifiedError(LinenError):
    """A logical-axis operation got no names/rules."""

    def __init__(self, target: Any):
        super().__init__(
            f"No partitioning was given for {target!r}.\n"
            "Fix: pass axis names, e.g. nn.with_partitioning(init, ('embed', 'mlp'))."
        )


class InitializationNotAllowedError(LinenError, ValueError):
    """A parameter/variable was declared outside ``setup`` and outside a ``@compact`` method."""

    def __init__(self, kind: str, name: str, module_cls: str):
        super().__init__(
            f"{kind} {name!r} of {module_cls} must be created in setup() or in a method "
            "wrapped in @compact.\n"
            "Fix: move the declaration into setup(), or decorate this method with "
            "@nn.compact."
        )


class UnboundModuleError(LinenError, ValueError):
    """An operation that needs variables was used on an unbound module."""

    def __init__(self, what: str, module_cls: str):
        super().__init__(
            f"Cannot {what} on the unbound module {module_cls}: it has no variables.\n"
            "Fix: call it inside module.apply()/init() (e.g. through method=...), or bind "
            "it first: bound = module.bind(variables)."
        )

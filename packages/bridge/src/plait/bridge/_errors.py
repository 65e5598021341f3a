"""Exception classes and message templates of plait.bridge.

Every message names the wrapper and where it sits (the NNX attribute path of a ``ToNNX``,
the Linen scope path of a ``ToLinen``), says what was expected and what was found, and
ends with a ``Fix:`` line.
"""

from __future__ import annotations

from typing import Final


class BridgeError(Exception):
    """Base class of every plait.bridge error."""


class NotInitializedError(BridgeError, AttributeError):
    """A ``ToNNX`` attribute was read before the wrapped Linen module created its variables.

    It is also an ``AttributeError``, so ``hasattr`` keeps working.
    """


class InitializationError(BridgeError):
    """Initializing the wrapped module failed (no sample input, no RNG, ...)."""


class MutabilityError(BridgeError):
    """A wrapped module wrote to a collection that the call did not make mutable."""


class VariableLayoutError(BridgeError, ValueError):
    """Variables cannot be converted between the Linen and NNX layouts."""


class UnknownStateWarning(UserWarning):
    """Linen variables given to a ``ToLinen`` have paths its NNX module does not have."""


NOT_INITIALIZED: Final = (
    "{where} has no attribute {name!r} yet: a Linen module creates its variables when it "
    "first sees an input, and this one has not been initialized.\n"
    "Fix: initialize it with a sample input first, e.g. `model.lazy_init(x)` or "
    "`bridge.lazy_init(model, x)` (or call it once: the first call initializes)."
)

INIT_MISSING_INPUT: Final = (
    "{where} could not initialize the Linen module {module}: {error}\n"
    "A Linen module infers its variable shapes from a sample input, so the first call (or "
    "lazy_init) must receive the same arguments as a normal call.\n"
    "Fix: pass a sample input, e.g. `bridge.lazy_init(model, jnp.ones((1, in_features)))`."
)

INIT_MISSING_RNG: Final = (
    "{where} needs an RNG to initialize the Linen module {module}, but it has none: {error}\n"
    "Fix: give the wrapper RNG streams, e.g. `bridge.ToNNX(module, rngs=nnx.Rngs(0))`, or "
    "pass them to the first call: `model(x, rngs=nnx.Rngs(0))`."
)

APPLY_IMMUTABLE: Final = (
    "{where}: the Linen module {module} wrote to collection {col!r}, which this call did not "
    "make mutable (Linen's apply is read-only unless told otherwise): {error}\n"
    "Fix: call it with `mutable=[{col!r}]` (or `mutable=True`), e.g. `model(x, "
    "mutable=[{col!r}])`; the updated values are written back into the same Variables."
)

LINEN_IMMUTABLE: Final = (
    "{where}: the NNX module changed the Variable at {path} (collection {col!r}), but "
    "{col!r} is immutable in this Linen call, so the change would be lost.\n"
    "Fix: make the collection mutable, e.g. `model.apply(variables, x, mutable=[{col!r}])`, "
    "or put the NNX module in a mode that does not update it (e.g. `.eval()` / "
    "`use_running_average=True`)."
)

LINEN_MISSING_VARIABLE: Final = (
    "{where}: the NNX module {cls} has a Variable at {path} (collection {col!r}) but the "
    "variables given to apply() have no value for it.\n"
    "Fix: pass the whole variables dict returned by init(), including the {col!r} "
    "collection."
)

DUPLICATE_PATH: Final = (
    "The Linen variables put two values at the same NNX attribute path {path}: one in "
    "collection {first!r}, one in {second!r}. NNX keeps one Variable per path.\n"
    "Fix: give the Linen variables different names in the two collections."
)

NOT_A_VARIABLE: Final = (
    "Cannot infer the Linen collection of the value at {path}: it is a {kind}, not an NNX "
    "Variable.\nFix: wrap it in the Variable type of its collection, e.g. "
    "nnx.Param(value) for 'params'."
)

RESERVED_ATTRIBUTE: Final = (
    "{where}: the Linen module {module} has a top-level variable or submodule named "
    "{name!r}, which clashes with an attribute of ToNNX itself.\n"
    "Fix: rename that variable or submodule (e.g. `name='{name}_'`)."
)

NOT_A_MODULE_METHOD: Final = (
    "lazy_init() expects an NNX Module or a bound method of one, but got {fn!r}.\n"
    "Fix: pass the module (`bridge.lazy_init(model, x)`) or one of its methods "
    "(`bridge.lazy_init(model.encode, x)`)."
)

NOT_IN_LINEN: Final = (
    "linen_rngs_dict() needs a Linen module that is bound to a scope (inside init/apply), "
    "but {module!r} is unbound.\nFix: call it from inside a Linen module method."
)

UNBOUND_BRIDGE_MODULE: Final = (
    "{cls}.{what}() needs the module to be bound to a scope, but it is not: bridge.Module "
    "creates and reads variables only inside init/apply (or after bridge.lazy_init).\n"
    "Fix: call `model.init(rngs, x)` / `model.apply(variables, x)`, or "
    "`bridge.lazy_init(model, x, rngs=nnx.Rngs(0))`."
)

VARIABLE_TYPE_MISMATCH: Final = (
    "{cls}: attribute {name!r} holds a {found}, but {what} expects a {expected} (collection "
    "{col!r}).\nFix: use another name, or the collection of the existing variable."
)

FUNCTIONAL_NOT_INITIALIZED: Final = (
    "Functional({cls}).apply() needs the module's graph definition, which init() records, "
    "but init() has not been called.\nFix: call `state = f.init(rngs=nnx.Rngs(0))` first, "
    "then `f.apply(state)(...)`."
)

"""``cond``, ``switch``, ``while_loop``, ``fori_loop`` with stateful objects in the operands.

Branches and loop bodies may update the state of the objects they receive; the updates
are written back to the original objects. Branches must leave the objects with the same
structure and return the same kind of output; a loop body must return its carry with the
same structure and the same objects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import jax

from .._lift import resolve_graph_updates
from .._lift import Lifted, OutInfo, StaticBox, is_lift_leaf, lift, resolve_graph_mode
from ._errors import CARRY_IDENTITY, LOOP_STRUCTURE, CarryError, OutputError

__all__ = ["cond", "switch", "while_loop", "fori_loop"]

A = TypeVar("A")
T = TypeVar("T")


def _lift_operands(operands: tuple[Any, ...], graph: bool | None, graph_updates: bool | None, transform: str) -> Lifted:
    return lift(
        operands, {}, prefix=None, graph=resolve_graph_mode(graph),
        graph_updates=resolve_graph_updates(graph_updates), transform=transform,
    )


def _branches(lifted: Lifted, functions: Sequence[Callable[..., Any]], transform: str) -> tuple[list[Callable[..., Any]], list[OutInfo]]:
    sk = lifted.skeleton
    seen: list[OutInfo] = []

    def make(fn: Callable[..., Any]) -> Callable[..., Any]:
        def branch(var_values: list[Any], leaf_values: list[Any]) -> Any:
            call = sk.enter(var_values, leaf_values)
            out = fn(*call.args, **call.kwargs)
            in_values, out_values, out_leaves, info, _, _ = call.exit(out)
            seen.append(info)
            return in_values, out_values, out_leaves, StaticBox(info)

        return branch

    return [make(fn) for fn in functions], seen


def _explain_mismatch(seen: list[OutInfo], transform: str, error: Exception) -> Exception:
    if len(seen) >= 2 and any(info != seen[0] for info in seen[1:]):
        differing = next(info for info in seen[1:] if info != seen[0])
        if seen[0].in_graphdef != differing.in_graphdef:
            detail = "one branch changed the structure of an operand object and another did not"
        elif seen[0].out_treedef != differing.out_treedef:
            detail = f"the outputs differ: {seen[0].out_treedef} vs {differing.out_treedef}"
        else:
            detail = "the branches return different objects or static values"
        return OutputError(
            f"{transform}: the branches must produce the same kind of result, but {detail}.\n"
            "Fix: make every branch update the same attributes and return values of the same "
            f"structure, shapes and dtypes.\n(JAX said: {error})"
        )
    return error


def cond(pred: Any, true_fun: Callable[..., A], false_fun: Callable[..., A], *operands: Any,
         graph: bool | None = None, graph_updates: bool | None = None) -> A:
    """``jax.lax.cond`` whose branches may update the state of objects in ``operands``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Variable, cond
        >>> class Counter(Object):
        ...     def __init__(self):
        ...         self.n = Variable(jnp.array(0))
        >>> c = Counter()
        >>> def up(c):
        ...     c.n[...] += 1
        >>> def down(c):
        ...     c.n[...] -= 1
        >>> cond(jnp.array(True), up, down, c); int(c.n[...])
        1
    """
    lifted = _lift_operands(operands, graph, graph_updates, "cond")
    (t, f), seen = _branches(lifted, [true_fun, false_fun], "cond")
    try:
        result = jax.lax.cond(pred, t, f, lifted.values(), lifted.leaves)
    except (TypeError, ValueError) as e:
        raise _explain_mismatch(seen, "cond", e) from e
    in_values, out_values, out_leaves, box = result
    return lifted.apply(box.value, in_values, out_values, out_leaves)  # type: ignore[no-any-return]


def switch(index: Any, branches: Sequence[Callable[..., A]], *operands: Any,
           graph: bool | None = None, graph_updates: bool | None = None) -> A:
    """``jax.lax.switch`` whose branches may update the state of objects in ``operands``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Variable, switch
        >>> class Acc(Object):
        ...     def __init__(self):
        ...         self.v = Variable(jnp.array(1.0))
        >>> def double(a):
        ...     a.v[...] *= 2
        >>> def square(a):
        ...     a.v[...] = a.v[...] ** 2
        >>> a = Acc()
        >>> switch(0, [double, square], a); float(a.v[...])
        2.0
    """
    lifted = _lift_operands(operands, graph, graph_updates, "switch")
    fns, seen = _branches(lifted, list(branches), "switch")
    try:
        result = jax.lax.switch(index, fns, lifted.values(), lifted.leaves)
    except (TypeError, ValueError) as e:
        raise _explain_mismatch(seen, "switch", e) from e
    in_values, out_values, out_leaves, box = result
    return lifted.apply(box.value, in_values, out_values, out_leaves)  # type: ignore[no-any-return]


# -- loops ---------------------------------------------------------------------------------------


def _loop_body(lifted: Lifted, transform: str) -> Callable[[Any, Any], tuple[list[Any], list[Any]]]:
    """Runs the user's body on a rebuilt carry; returns the new (var values, leaves)."""
    sk = lifted.skeleton

    def run(fn: Callable[[Any], Any], carry: Any) -> tuple[list[Any], list[Any]]:
        var_values, leaf_values = carry
        call = sk.enter(var_values, leaf_values)
        val_in = call.args[0]
        val_out = fn(val_in)
        in_leaves, in_tree = jax.tree_util.tree_flatten(val_in, is_leaf=is_lift_leaf)
        out_leaves, out_tree = jax.tree_util.tree_flatten(val_out, is_leaf=is_lift_leaf)
        if in_tree != out_tree:
            raise CarryError(
                LOOP_STRUCTURE.format(transform=transform, what="loop value", before=in_tree, after=out_tree)
            )
        new_leaves = []
        for i, (a, b) in enumerate(zip(in_leaves, out_leaves, strict=False)):
            if is_lift_leaf(a) or is_lift_leaf(b):
                if a is not b:
                    raise CarryError(
                        CARRY_IDENTITY.format(
                            transform=transform, path=f"leaf {i} of the loop value",
                            before=type(a).__name__, after=type(b).__name__,
                        )
                    )
            else:
                new_leaves.append(b)
        in_values, _, _, info, _, _ = call.exit(None, outputs=False)
        if info.in_graphdef is not None:
            raise CarryError(
                LOOP_STRUCTURE.format(
                    transform=transform, what="structure of the objects in the loop value",
                    before=sk.graphdef, after=info.in_graphdef,
                )
            )
        return list(in_values), new_leaves

    return run  # type: ignore[return-value]


def _finish_loop(lifted: Lifted, init_val: Any, final: Any) -> Any:
    var_values, leaf_values = final
    info = OutInfo(None, (), jax.tree_util.tree_structure(None), (), (), (), None, (), ())
    lifted.write_back(info, var_values)
    return lifted.rebuild_arg((init_val,), 0, leaf_values)


def while_loop(cond_fun: Callable[[T], Any], body_fun: Callable[[T], T], init_val: T, *,
               graph: bool | None = None, graph_updates: bool | None = None) -> T:
    """``jax.lax.while_loop`` whose carry may hold objects (their state is carried).

    ``body_fun`` must return its input's structure with the same objects (updated in
    place); ``cond_fun`` sees the current value (its own updates are discarded).

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Variable, while_loop
        >>> class Counter(Object):
        ...     def __init__(self):
        ...         self.n = Variable(jnp.array(0))
        >>> def body(val):
        ...     c, x = val
        ...     c.n[...] += 1
        ...     return c, x * 2
        >>> c, x = while_loop(lambda v: v[1] < 10, body, (Counter(), jnp.array(1)))
        >>> int(c.n[...]), int(x)
        (4, 16)
    """
    lifted = _lift_operands((init_val,), graph, graph_updates, "while_loop")
    run = _loop_body(lifted, "while_loop")
    sk = lifted.skeleton

    def cond(carry: Any) -> Any:
        call = sk.enter(*carry)
        return cond_fun(call.args[0])

    def body(carry: Any) -> Any:
        return run(body_fun, carry)

    final = jax.lax.while_loop(cond, body, (lifted.values(), list(lifted.leaves)))
    return _finish_loop(lifted, init_val, final)  # type: ignore[no-any-return]


def fori_loop(lower: int, upper: int, body_fun: Callable[[int, T], T], init_val: T, *,
              unroll: int | bool | None = None, graph: bool | None = None,
              graph_updates: bool | None = None) -> T:
    """``jax.lax.fori_loop`` whose carry may hold objects (their state is carried).

    Examples:
        >>> import jax.numpy as jnp
        >>> from plait.core import Object, Variable, fori_loop
        >>> class Acc(Object):
        ...     def __init__(self):
        ...         self.total = Variable(jnp.array(0))
        >>> def body(i, acc):
        ...     acc.total[...] += i
        ...     return acc
        >>> int(fori_loop(0, 5, body, Acc()).total[...])
        10
    """
    lifted = _lift_operands((init_val,), graph, graph_updates, "fori_loop")
    run = _loop_body(lifted, "fori_loop")

    def body(i: Any, carry: Any) -> Any:
        return run(lambda val: body_fun(i, val), carry)

    final = jax.lax.fori_loop(lower, upper, body, (lifted.values(), list(lifted.leaves)), unroll=unroll)
    return _finish_loop(lifted, init_val, final)  # type: ignore[no-any-return]

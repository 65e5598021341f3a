"""Split / merge / update contexts: the low-level kit for writing custom lifted transforms.

The pattern (as in Flax)::

    with nnx.update_context("tag"):
      with nnx.split_context("tag") as ctx:
        graphdef, state = ctx.split(model)          # outer split
      @jax.jit
      def f(graphdef, state):
        with nnx.merge_context("tag", True) as ctx:
          m = ctx.merge(graphdef, state)            # inner merge: fresh objects
        m.count[...] += 1; m.extra = nnx.Param(...) # mutate, even structurally
        with nnx.split_context("tag") as ctx:
          return ctx.split(m)                       # inner split
      graphdef, state = f(graphdef, state)
      with nnx.merge_context("tag", False) as ctx:
        model = ctx.merge(graphdef, state)          # outer merge: writes into `model`

plait matches the outer merge's result to the objects of the outer split by path (not by
Flax's index bookkeeping): every node of the new graph whose path and type exist in the
original graph is written into the original object, Variables with ``copy_from``; new
nodes are taken as they are. Inner vs outer is told apart by the JAX trace: a context
entered in another trace than the outer split's is inner (or pass ``inner=``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
from collections.abc import Iterator
from typing import Any

from plait.core import (
    GraphDef,
    Object,
    Variable,
    flatten,
    from_flat_state,
    merge_state,
    split_state,
    trace_guard_disabled,
    unflatten,
)

from ._core_internals import bump_structure_epoch
from .tracers import current_jax_trace

_local = threading.local()


def _stacks() -> dict[Any, list[UpdateContext]]:
    stacks = getattr(_local, "stacks", None)
    if stacks is None:
        stacks = _local.stacks = {}
    return stacks


@dataclasses.dataclass
class SplitContext:
    """Splits several graphs with one shared numbering (``ref_index``)."""

    ctxtag: Any
    ref_index: dict[int, int]
    is_inner: bool | None

    def split(self, node: Any, *filters: Any) -> tuple[Any, ...]:
        graphdef, flat = flatten(node, ref_index=self.ref_index)
        state = from_flat_state([(p, v.copy() if isinstance(v, Variable) else v) for p, v in flat])
        self._record(node)
        if not filters:
            return graphdef, state
        states = split_state(state, *filters)
        return (graphdef, *(states if isinstance(states, tuple) else (states,)))

    def flatten(self, node: Any, *filters: Any, with_paths: bool = True) -> tuple[Any, ...]:
        graphdef, flat = flatten(node, ref_index=self.ref_index, with_paths=with_paths)
        self._record(node)
        if not filters or not with_paths:
            return graphdef, flat
        return (graphdef, *flat.split(*filters)) if len(filters) > 1 else (graphdef, flat.filter(filters[0]))

    def _record(self, node: Any) -> None:
        ctx = _current_or_none(self.ctxtag)
        if ctx is not None and not self.is_inner:
            ctx.flatten_end({id(node): node})


@contextlib.contextmanager
def split_context(ctxtag: Any = None) -> Iterator[SplitContext]:
    """A :class:`SplitContext`; inside ``update_context(ctxtag)`` it takes part in it."""
    ctx = _current_or_none(ctxtag)
    is_inner = None if ctx is None else ctx.is_inner_trace()
    yield SplitContext(ctxtag, {}, is_inner)


@dataclasses.dataclass
class MergeContext:
    """Merges several graphs with one shared object table (``index_ref``)."""

    ctxtag: Any
    index_ref: dict[int, Any]
    is_inner: bool | None

    def merge(self, graphdef: GraphDef, state: Any, /, *states: Any) -> Any:
        ctx = _current_or_none(self.ctxtag)
        if states:
            state = merge_state(state, *states)
        # One index table for every merge of this context: objects split with one
        # SplitContext (shared numbering) come back shared.
        node = unflatten(graphdef, state, index_ref=self.index_ref)
        if ctx is not None:
            return ctx.unflatten_end({0: node}, bool(self.is_inner))
        return node

    def unflatten(self, graphdef: GraphDef, flat_state: Any, /, *flat_states: Any) -> Any:
        leaves = list(flat_state) + [x for fs in flat_states for x in fs]
        values = [v for _, v in leaves] if leaves and isinstance(leaves[0], tuple) else leaves
        node = unflatten(graphdef, values, index_ref=self.index_ref)
        ctx = _current_or_none(self.ctxtag)
        if ctx is not None:
            return ctx.unflatten_end({0: node}, bool(self.is_inner))
        return node


@contextlib.contextmanager
def merge_context(ctxtag: Any = None, inner: bool | None = None) -> Iterator[MergeContext]:
    """A :class:`MergeContext`; ``inner`` defaults to "in another trace than the split"."""
    ctx = _current_or_none(ctxtag)
    if inner is None:
        inner = bool(ctx is not None and ctx.is_inner_trace())
    yield MergeContext(ctxtag, {}, inner)


class UpdateContext:
    """State of one ``update_context``: the graphs split outside, to be updated in place."""

    def __init__(
        self,
        tag: Any,
        outer_ref_outer_index: Any,
        outer_index_inner_ref: Any,
        outer_index_outer_ref: Any,
        inner_ref_outer_index: Any,
        static_cache: Any,
    ):
        # The index tables are Flax's bookkeeping; plait matches objects by path, so it
        # accepts them (for signature compatibility) and keeps only the tag.
        del outer_ref_outer_index, outer_index_inner_ref, outer_index_outer_ref
        del inner_ref_outer_index, static_cache
        self.tag = tag
        self.outer_roots: list[Any] = []
        self.outer_trace: Any = None
        self.inner_merged = False

    def is_inner_trace(self) -> bool:
        return self.outer_trace is not None and current_jax_trace() != self.outer_trace

    def flatten_end(self, ref_index: dict[int, Any]) -> None:
        """Records roots split outside the transform (their objects get the updates)."""
        if self.outer_trace is None:
            self.outer_trace = current_jax_trace()
        self.outer_roots.extend(ref_index.values())

    def unflatten_end(self, index_ref: dict[int, Any], inner_merge: bool) -> Any:
        """Finishes a merge: inner merges are kept; outer merges update the split roots."""
        node = index_ref[0]
        if inner_merge:
            self.inner_merged = True
            return node
        if not self.outer_roots:
            return node
        original = self.outer_roots.pop(0)
        with trace_guard_disabled():
            return _transplant(original, node, {})


def _transplant(original: Any, new: Any, memo: dict[int, Any]) -> Any:
    """Writes ``new`` into ``original`` where path and type agree; returns the result."""
    if id(new) in memo:
        return memo[id(new)]
    if isinstance(new, Variable):
        if type(original) is type(new):
            original.copy_from(new)
            memo[id(new)] = original
            return original
        return new
    if isinstance(new, Object):
        if type(original) is not type(new):
            return new
        memo[id(new)] = original
        old = original.__dict__
        updated = {k: _transplant(old.get(k, _ABSENT), v, memo) for k, v in new.__dict__.items()}
        old.clear()
        old.update(updated)
        object.__setattr__(original, "_plait_kinds", new._plait_kinds)
        bump_structure_epoch()
        return original
    if isinstance(new, list | tuple) and type(original) is type(new) and len(original) == len(new):
        items = [_transplant(o, n, memo) for o, n in zip(original, new, strict=True)]
        return type(new)(items) if isinstance(new, list) else tuple(items)
    if isinstance(new, dict) and type(original) is type(new):
        return type(new)({k: _transplant(original.get(k, _ABSENT), v, memo) for k, v in new.items()})
    return new


class _AbsentType:
    pass


_ABSENT = _AbsentType()


def _current_or_none(tag: Any) -> UpdateContext | None:
    if tag is None:
        return None
    stack = _stacks().get(tag)
    return stack[-1] if stack else None


def current_update_context(tag: Any) -> UpdateContext:
    """The innermost active ``update_context(tag)``; an error when there is none."""
    ctx = _current_or_none(tag)
    if ctx is None:
        raise ValueError(
            f"No update_context({tag!r}) is active.\nFix: wrap the split, the transform and "
            f"the merge in `with nnx.update_context({tag!r}):`."
        )
    return ctx


class update_context:  # noqa: N801 - Flax's name; a context manager and decorator
    """Groups an outer split, a transform and an outer merge so the merge updates in place."""

    def __init__(self, tag: Any):
        self.tag = tag

    def __enter__(self) -> UpdateContext:
        ctx = UpdateContext(self.tag, None, None, None, None, None)
        _stacks().setdefault(self.tag, []).append(ctx)
        return ctx

    def __exit__(self, *exc: Any) -> None:
        stack = _stacks()[self.tag]
        stack.pop()
        if not stack:
            del _stacks()[self.tag]

    def __call__(self, f):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            with update_context(self.tag):
                return f(*args, **kwargs)

        return wrapper

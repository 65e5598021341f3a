"""RNG helpers Flax has on ``flax.nnx`` that plait.core does not: ``backup_keys``, ``with_rngs``."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from plait.core import RngStream, clone, iter_graph, to_predicate

from ._core_internals import SplitBackups, StreamBackup


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def _streams(node: Any, only: Any = ...) -> list[tuple[tuple, RngStream]]:
    predicate = to_predicate(only)
    return [
        (tuple(path), value)
        for path, value in iter_graph(node)
        if isinstance(value, RngStream) and predicate(tuple(path), value)
    ]


def backup_keys(node: Any, /, *, graph: bool | None = None) -> SplitBackups:
    """Saves the key and count of every RNG stream in ``node`` (for ``nnx.restore_rngs``).

    Example:
      >>> from plait import nnx
      >>> rngs = nnx.Rngs(0)
      >>> backups = nnx.rnglib.backup_keys(rngs)
      >>> _ = rngs(); int(rngs.default.count[...])
      1
      >>> nnx.restore_rngs(backups); int(rngs.default.count[...])
      0
    """
    del graph
    return SplitBackups(
        StreamBackup(s, s.key.get_raw_value(), s.count.get_raw_value()) for _, s in _streams(node)
    )


def _rule(spec: Any, path: tuple, stream: RngStream) -> Any:
    """The value of a ``{filter: n}`` mapping (or a bare ``n``) for this stream, or None."""
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        for flt, n in spec.items():
            if to_predicate(flt)(path, stream):
                return n
        return None
    return spec


def _matches(filters: Any, path: tuple, stream: RngStream) -> bool:
    if filters is None:
        return False
    if isinstance(filters, list | tuple):
        return any(to_predicate(f)(path, stream) for f in filters)
    return to_predicate(filters)(path, stream)


def with_rngs(
    node: Any = MISSING,
    /,
    *,
    split: Any = None,
    fork: Any = None,
    broadcast: Any = None,
    only: Any = True,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """A copy of ``node`` whose RNG streams are split, forked or broadcast.

    For each stream selected by ``only``: ``split`` (``n``, a shape, or ``{filter: n}``)
    gives it ``n`` independent keys (for ``vmap``/``scan`` over the copy), ``fork``
    (filters) gives it one fresh key, ``broadcast`` (``n`` or ``{filter: n}``) repeats its
    next key ``n`` times. ``node`` itself is not changed. Without ``node``, returns a
    decorator applying the same to every argument of the decorated function.

    Example:
      >>> from plait import nnx
      >>> rngs = nnx.with_rngs(nnx.Rngs(0), split=4)
      >>> rngs.default.key.shape
      (4,)
    """
    del graph, graph_updates
    if node is MISSING:

        def decorator(f):
            @functools.wraps(f)
            def wrapper(*args, **kwargs):
                apply = functools.partial(
                    with_rngs, split=split, fork=fork, broadcast=broadcast, only=only
                )
                return f(*(apply(a) for a in args), **{k: apply(v) for k, v in kwargs.items()})

            return wrapper

        return decorator
    if not _streams(node, only):
        return node
    copy = clone(node)
    for path, stream in _streams(copy, only):
        n_split = _rule(split, path, stream)
        n_broadcast = _rule(broadcast, path, stream)
        if n_split is not None:
            new = stream.split(n_split)
        elif n_broadcast is not None:
            new = stream.broadcast(n_broadcast)
        elif _matches(fork, path, stream):
            new = stream.fork()
        else:
            continue
        stream.key.set_raw_value(new.key.get_raw_value())
        stream.count.set_raw_value(new.count.get_raw_value())
    return copy

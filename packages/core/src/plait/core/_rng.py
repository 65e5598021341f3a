"""RNG streams: named (key, counter) pairs held as ordinary Variables.

A draw from a stream is ``jax.random.fold_in(key, count)`` followed by ``count += 1`` (the
derivation Flax uses, so the same seed and the same order of draws give the same keys).
Because the key and the counter are Variables (``RngKey``, ``RngCount``, both tagged with
the stream name), RNG state is split, merged, vmapped and carried like any other state;
the string filter ``"dropout"`` selects the dropout stream's Variables.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import jax
import jax.numpy as jnp

from ._errors import MISSING_STREAM, RngStreamError
from ._filters import Filter, to_predicate
from ._graph import iter_graph
from ._object import Object
from ._variable import MISSING, Variable

F = TypeVar("F", bound=Callable[..., Any])
RngValue = Any  # int | jax.Array (a typed key or raw uint32 key data)


class RngState(Variable[jax.Array]):
    """Base class of the Variables that make up RNG state."""

    __slots__ = ()


class RngKey(RngState):
    """The base key of an RNG stream."""

    __slots__ = ()


class RngCount(RngState):
    """The number of keys drawn from an RNG stream so far."""

    __slots__ = ()


def _to_key(key: RngValue) -> jax.Array:
    if isinstance(key, int):
        return jax.random.key(key)
    if isinstance(key, jax.Array) and not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.dtype == jnp.uint32:
            return jax.random.wrap_key_data(key)
        if jnp.issubdtype(key.dtype, jnp.integer) and key.ndim == 0:
            return jax.random.key(key)
    return key  # type: ignore[no-any-return]


def _fold_in(key: jax.Array, count: jax.Array) -> jax.Array:
    if key.ndim == 0:
        return jax.random.fold_in(key, count)
    # A stream split outside vmap (split_rngs) holds a batch of keys: derive one key each.
    flat = jax.vmap(jax.random.fold_in)(key.reshape(-1), jnp.broadcast_to(count, key.shape).reshape(-1))
    return flat.reshape(key.shape)


def _random_method(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``stream.normal(shape)`` == ``jax.random.normal(stream(), shape)``."""

    @functools.wraps(fn)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(self(), *args, **kwargs)

    return method


def _initializer_method(factory: Callable[..., Any]) -> Callable[..., Any]:
    """``rngs.lecun_normal(...)`` -> ``init(shape, dtype)`` drawing a key per call."""

    @functools.wraps(factory)
    def method(self: Any, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        init = factory(*args, **kwargs)

        def keyless(shape: Any, dtype: Any = None, out_sharding: Any = None) -> Any:
            if dtype is None:
                return init(self(), shape)
            return init(self(), shape, dtype)

        return keyless

    return method


_RANDOM_FUNCTIONS = (
    "bits uniform randint permutation choice normal multivariate_normal truncated_normal "
    "bernoulli beta cauchy dirichlet exponential gamma loggamma poisson gumbel categorical "
    "laplace logistic pareto t chisquare f rademacher maxwell double_sided_maxwell weibull_min "
    "orthogonal generalized_normal ball rayleigh wald geometric triangular lognormal binomial "
    "multinomial"
).split()
_INITIALIZERS = (
    "delta_orthogonal glorot_normal glorot_uniform he_normal he_uniform kaiming_normal "
    "kaiming_uniform lecun_normal lecun_uniform variance_scaling xavier_normal xavier_uniform"
).split()


def _add_random_methods(cls: type) -> type:
    for name in _RANDOM_FUNCTIONS:
        fn = getattr(jax.random, name, None)
        if fn is not None:
            setattr(cls, name, _random_method(fn))
    for name in _INITIALIZERS:
        factory = getattr(jax.nn.initializers, name, None)
        if factory is not None:
            setattr(cls, name, _initializer_method(factory))
    return cls


@_add_random_methods
class RngStream(Object):
    """One named RNG stream: a base key and a counter.

    Examples:
        >>> import jax
        >>> from plait.core import RngStream
        >>> stream = RngStream(0, tag="dropout")
        >>> k1, k2 = stream(), stream()
        >>> bool((jax.random.key_data(k1) == jax.random.key_data(jax.random.fold_in(jax.random.key(0), 0))).all())
        True
        >>> int(stream.count[...])
        2
    """

    def __init__(self, key: jax.Array | int, *, tag: str):
        key = _to_key(key)
        self.key = RngKey(key, tag=tag)
        self.count = RngCount(jnp.zeros(key.shape, dtype=jnp.uint32), tag=tag)
        self.tag = tag

    def __call__(self) -> jax.Array:
        count = self.count.get_raw_value()
        key = _fold_in(self.key.get_raw_value(), count)
        self.count.set_raw_value(count + 1)
        return key

    def split(self, k: int | tuple[int, ...]) -> RngStream:
        """A new stream whose key is ``k`` keys split from a fresh draw."""
        return type(self)(jax.random.split(self(), k), tag=self.tag)

    def fork(self, *, split: int | tuple[int, ...] | None = None) -> RngStream:
        """A new independent stream seeded from a fresh draw (``split``: a batch of them)."""
        key = self()
        if split is not None:
            key = jax.random.split(key, split)
        return type(self)(key, tag=self.tag)

    def broadcast(self, k: int | tuple[int, ...]) -> RngStream:
        """A new stream holding the same fresh key repeated ``k`` times."""
        shape = (k,) if isinstance(k, int) else tuple(k)
        key = self()
        return type(self)(jnp.broadcast_to(key, shape + key.shape), tag=self.tag)


def _as_stream(name: str, value: Any) -> RngStream:
    if isinstance(value, RngStream):
        return value
    return RngStream(value, tag=name)


@_add_random_methods
class Rngs(Object):
    """A set of named RNG streams; unknown names fall back to the ``default`` stream.

    Examples:
        >>> from plait.core import Rngs
        >>> rngs = Rngs(0, params=1)
        >>> key = rngs.params()          # the 'params' stream
        >>> key = rngs()                 # the default stream
        >>> key = rngs.dropout()         # no 'dropout' stream: uses the default
        >>> sorted(rngs)
        ['default', 'params']
        >>> x = rngs.normal((2, 3))      # jax.random helpers draw from the default stream
        >>> x.shape
        (2, 3)
    """

    def __init__(self, default: Any = None, **rngs: Any):
        if isinstance(default, Mapping):
            rngs = {**default, **rngs}
            default = None
        if default is not None:
            rngs = {"default": default, **rngs}
        for name, value in rngs.items():
            setattr(self, name, _as_stream(name, value))

    def _streams(self) -> dict[str, RngStream]:
        return {k: v for k, v in vars(self).items() if isinstance(v, RngStream)}

    def _stream(self, name: str) -> RngStream:
        attrs = vars(self)
        stream = attrs.get(name)
        if isinstance(stream, RngStream):
            return stream
        default = attrs.get("default")
        if isinstance(default, RngStream):
            return default
        raise RngStreamError(MISSING_STREAM.format(name=name, available=sorted(self._streams()) or "none"))

    def __getattr__(self, name: str) -> RngStream:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._stream(name)

    def __getitem__(self, name: str) -> RngStream:
        return self._stream(name)

    def __call__(self) -> jax.Array:
        return self._stream("default")()

    def __iter__(self) -> Iterator[str]:
        return iter(self._streams())

    def __len__(self) -> int:
        return len(self._streams())

    def __contains__(self, name: Any) -> bool:
        return name in self._streams()

    def items(self) -> Iterable[tuple[str, RngStream]]:
        return self._streams().items()

    def _for_each(self, spec: Any, make: Callable[[RngStream, Any], RngStream], missing: Any) -> Rngs:
        if isinstance(spec, Mapping):
            rules = [(to_predicate(f), v) for f, v in spec.items()]
        else:
            rules = [(to_predicate(...), spec)]
        new: dict[str, RngStream] = {}
        for name, stream in self.items():
            for predicate, value in rules:
                if predicate((name,), stream):
                    new[name] = make(stream, value)
                    break
            else:
                new[name] = missing(stream)
        return Rngs(**new)

    def split(self, k: Any) -> Rngs:
        """New Rngs whose streams hold ``k`` split keys (``k`` may map filters to counts)."""
        return self._for_each(k, lambda s, n: s.split(n), lambda s: s.fork())

    def fork(self, *, split: Any = None) -> Rngs:
        """New independent Rngs seeded from fresh draws; ``split`` as in :meth:`split`."""
        if split is None:
            return Rngs(**{name: s.fork() for name, s in self.items()})
        return self._for_each(split, lambda s, n: s.fork(split=n), lambda s: s.fork())

    def broadcast(self, k: Any) -> Rngs:
        """New Rngs whose streams repeat one fresh key ``k`` times (``None``: plain fork)."""

        def make(stream: RngStream, n: Any) -> RngStream:
            return stream.fork() if n is None else stream.broadcast(n)

        return self._for_each(k, make, lambda s: s.fork())


# -- graph-wide operations ----------------------------------------------------------------


class StreamBackup:
    """A stream's key and count before a split/fork; :func:`restore_rngs` puts them back."""

    __slots__ = ("stream", "key", "count")

    def __init__(self, stream: RngStream, key: Any, count: Any):
        self.stream = stream
        self.key = key
        self.count = count

    def restore(self) -> None:
        self.stream.key.set_raw_value(self.key)
        self.stream.count.set_raw_value(self.count)


class SplitBackups(list):  # type: ignore[type-arg]
    """Backups of the streams changed by split_rngs/fork_rngs; a context manager that restores."""

    def __enter__(self) -> SplitBackups:
        return self

    def __exit__(self, *exc: Any) -> None:
        restore_rngs(self)


def restore_rngs(backups: Iterable[StreamBackup], /) -> None:
    """Puts back the keys and counts saved by :func:`split_rngs` / :func:`fork_rngs`."""
    for backup in backups:
        backup.restore()


def _streams_in(node: Any, only: Filter) -> list[tuple[tuple[Any, ...], RngStream]]:
    predicate = to_predicate(only)
    return [
        (path, value)
        for path, value in iter_graph(node)
        if isinstance(value, RngStream) and predicate(path, value)
    ]


def _decorate(apply: Callable[[Any], SplitBackups]) -> Callable[[F], F]:
    """A decorator that applies ``apply`` to every argument before the call, then restores."""

    def decorator(f: F) -> F:
        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            backups = apply((args, kwargs))
            try:
                return f(*args, **kwargs)
            finally:
                restore_rngs(backups)

        return wrapper  # type: ignore[return-value]

    return decorator


def split_rngs(
    node: Any = MISSING,
    /,
    *,
    splits: int | tuple[int, ...],
    only: Filter = ...,
    squeeze: bool = False,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """Replaces the key of every RNG stream in ``node`` by ``splits`` keys split from a draw.

    Used before a lifted ``vmap``/``scan`` so that each slice gets its own key. Returns
    :class:`SplitBackups` (a context manager that restores the streams on exit); without
    ``node`` it is a decorator that splits the streams in the call's arguments.

    Examples:
        >>> from plait.core import Rngs, split_rngs
        >>> rngs = Rngs(0)
        >>> with split_rngs(rngs, splits=4):
        ...     rngs.default.key.shape
        (4,)
        >>> rngs.default.key.shape
        ()
    """
    if node is MISSING:
        return _decorate(lambda tree: split_rngs(tree, splits=splits, only=only, squeeze=squeeze))
    if squeeze and splits != 1 and splits != (1,):
        raise ValueError(f"split_rngs(squeeze=True) needs splits=1, got splits={splits!r}.")
    backups = SplitBackups()
    for _, stream in _streams_in(node, only):
        key = stream()
        backups.append(StreamBackup(stream, stream.key.get_raw_value(), stream.count.get_raw_value()))
        keys = jax.random.split(key, splits)
        if squeeze:
            keys = keys[0]
        stream.key.set_raw_value(keys)
        stream.count.set_raw_value(jnp.zeros(keys.shape, dtype=jnp.uint32))
    return backups


def fork_rngs(
    node: Any = MISSING,
    /,
    *,
    split: Mapping[Filter, int | tuple[int, ...] | None] | int | None = None,
    graph: bool | None = None,
    graph_updates: bool | None = None,
) -> Any:
    """Re-seeds every stream in ``node`` from one of its own draws (optionally split).

    Returns :class:`SplitBackups`; without ``node`` it is a decorator.
    """
    if node is MISSING:
        return _decorate(lambda tree: fork_rngs(tree, split=split))
    if isinstance(split, Mapping):
        rules = [(to_predicate(f), n) for f, n in split.items()]
    else:
        rules = [(to_predicate(...), split)]
    backups = SplitBackups()
    for path, stream in _streams_in(node, ...):
        n = None
        for predicate, value in rules:
            if predicate(path, stream):
                n = value
                break
        key = stream()
        backups.append(StreamBackup(stream, stream.key.get_raw_value(), stream.count.get_raw_value()))
        if n is not None:
            key = jax.random.split(key, n)
        stream.key.set_raw_value(key)
        stream.count.set_raw_value(jnp.zeros(key.shape, dtype=jnp.uint32))
    return backups


def reseed(node: Any, /, *, graph: bool | None = None, policy: Any = "scalars_only", **stream_keys: RngValue) -> None:
    """Gives the named streams in ``node`` new keys and resets their counters.

    Args:
        policy: what to do with streams whose key is a batch (after split_rngs):
            ``'scalars_only'`` raises, ``'match_shape'`` splits the new key to that shape, or a
            callable ``(path, new_key, shape) -> keys``.

    Examples:
        >>> import jax
        >>> from plait.core import Rngs, reseed
        >>> rngs = Rngs(dropout=0)
        >>> first = rngs.dropout()
        >>> reseed(rngs, dropout=0)
        >>> bool((jax.random.key_data(rngs.dropout()) == jax.random.key_data(first)).all())
        True
    """
    for path, stream in _streams_in(node, ...):
        if stream.tag not in stream_keys:
            continue
        new_key = _to_key(stream_keys[stream.tag])
        shape = stream.key.get_raw_value().shape
        if shape != new_key.shape:
            if policy == "scalars_only":
                raise ValueError(
                    f"reseed(): the stream {stream.tag!r} at {path} holds keys of shape {shape}, "
                    f"the new key has shape {new_key.shape}. Fix: pass policy='match_shape' to "
                    "split the new key to that shape."
                )
            if policy == "match_shape":
                new_key = jax.random.split(new_key, shape)
            else:
                new_key = policy(path, new_key, shape)
        stream.key.set_raw_value(new_key)
        stream.count.set_raw_value(jnp.zeros(new_key.shape, dtype=jnp.uint32))

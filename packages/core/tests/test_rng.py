import jax
import jax.numpy as jnp
import pytest
from plait.core import (
    Object,
    RngCount,
    RngKey,
    Rngs,
    RngState,
    RngStream,
    RngStreamError,
    fork_rngs,
    reseed,
    restore_rngs,
    split,
    split_rngs,
    state,
)


def keydata(k):
    return jax.random.key_data(k).tolist()


def test_stream_derivation_matches_fold_in():
    stream = RngStream(3, tag="params")
    base = jax.random.key(3)
    assert keydata(stream()) == keydata(jax.random.fold_in(base, 0))
    assert keydata(stream()) == keydata(jax.random.fold_in(base, 1))
    assert int(stream.count[...]) == 2 and stream.count.dtype == jnp.uint32
    assert isinstance(stream.key, RngKey) and isinstance(stream.count, RngCount)
    assert issubclass(RngKey, RngState) and stream.key.tag == "params"


def test_stream_accepts_keys_and_raw_key_data():
    key = jax.random.key(1)
    assert keydata(RngStream(key, tag="a")()) == keydata(RngStream(1, tag="a")())
    raw = jax.random.key_data(key)
    assert keydata(RngStream(raw, tag="a")()) == keydata(RngStream(1, tag="a")())


def test_rngs_streams_and_default():
    rngs = Rngs(0, params=1)
    assert sorted(rngs) == ["default", "params"] and len(rngs) == 2
    assert "params" in rngs and "dropout" not in rngs
    assert keydata(rngs.params()) == keydata(jax.random.fold_in(jax.random.key(1), 0))
    assert keydata(rngs()) == keydata(jax.random.fold_in(jax.random.key(0), 0))
    assert rngs["params"] is rngs.params
    assert rngs.dropout is rngs.default  # unknown names fall back to default
    assert dict(rngs.items())["params"] is rngs.params


def test_rngs_mapping_argument():
    rngs = Rngs({"params": 0, "dropout": 1})
    assert sorted(rngs) == ["dropout", "params"]


def test_missing_stream_error():
    rngs = Rngs(params=0)
    with pytest.raises(RngStreamError, match="No RNG stream named 'dropout'.*Available streams: \\['params'\\]"):
        rngs.dropout()
    with pytest.raises(KeyError, match="dropout"):
        rngs["dropout"]
    assert not hasattr(rngs, "dropout")
    with pytest.raises(AttributeError, match="default"):
        rngs()


def test_random_helpers():
    rngs = Rngs(0)
    x = rngs.normal((2, 3))
    expected = jax.random.normal(jax.random.fold_in(jax.random.key(0), 0), (2, 3))
    assert jnp.allclose(x, expected)
    assert rngs.uniform((4,)).shape == (4,)
    init = rngs.lecun_normal()
    assert init((3, 4)).shape == (3, 4)
    assert RngStream(0, tag="a").bernoulli(0.5, (3,)).shape == (3,)


def test_rng_state_is_graph_state():
    class Model(Object):
        def __init__(self, rngs):
            self.rngs = rngs

    model = Model(Rngs(0, dropout=1))
    st = state(model, "dropout")
    assert set(st["rngs"]) == {"dropout"} and set(st["rngs"]["dropout"]) == {"count", "key"}
    gd, keys, rest = split(model, RngKey, ...)
    assert all(isinstance(v, RngKey) for v in jax.tree.leaves(keys, is_leaf=lambda x: isinstance(x, RngKey)))


def test_stream_split_fork_broadcast():
    stream = RngStream(0, tag="a")
    assert stream.split(3).key.shape == (3,)
    assert stream.fork().key.shape == ()
    assert stream.fork(split=(2, 2)).key.shape == (2, 2)
    assert stream.broadcast(4).key.shape == (4,)
    assert int(stream.count[...]) == 4


def test_rngs_split_fork():
    rngs = Rngs(params=0, dropout=1)
    split_ = rngs.split({"dropout": 4, ...: None} if False else {"dropout": 4})
    assert split_.dropout.key.shape == (4,) and split_.params.key.shape == ()
    assert rngs.split(2).params.key.shape == (2,)
    forked = rngs.fork()
    assert keydata(forked.params()) != keydata(rngs.params())
    assert rngs.fork(split=3).dropout.key.shape == (3,)
    assert rngs.broadcast(5).params.key.shape == (5,)


def test_split_rngs_and_restore():
    class Model(Object):
        def __init__(self):
            self.rngs = Rngs(params=0, dropout=1)

    model = Model()
    backups = split_rngs(model, splits=4, only="dropout")
    assert model.rngs.dropout.key.shape == (4,) and model.rngs.params.key.shape == ()
    assert model.rngs.dropout.count.shape == (4,)
    keys = model.rngs.dropout()  # batched draw
    assert keys.shape == (4,)
    restore_rngs(backups)
    assert model.rngs.dropout.key.shape == ()
    assert int(model.rngs.dropout.count[...]) == 1  # the draw that seeded the split
    with split_rngs(model, splits=1, squeeze=True):
        assert model.rngs.params.key.shape == ()
    with pytest.raises(ValueError, match="squeeze=True"):
        split_rngs(model, splits=2, squeeze=True)


def test_split_rngs_decorator():
    rngs = Rngs(0)

    @split_rngs(splits=5)
    def f(r):
        return r.default.key.shape

    assert f(rngs) == (5,) and rngs.default.key.shape == ()


def test_fork_rngs():
    rngs = Rngs(params=0, dropout=1)
    before = keydata(rngs.params.key[...])
    with fork_rngs(rngs, split={"dropout": 2}):
        assert rngs.dropout.key.shape == (2,) and rngs.params.key.shape == ()
        assert keydata(rngs.params.key[...]) != before
    assert keydata(rngs.params.key[...]) == before


def test_reseed():
    rngs = Rngs(params=0, dropout=1)
    first = rngs.dropout()
    rngs.dropout()
    reseed(rngs, dropout=1)
    assert keydata(rngs.dropout()) == keydata(first)
    split_rngs(rngs, splits=3, only="params")
    with pytest.raises(ValueError, match="policy='match_shape'"):
        reseed(rngs, params=5)
    reseed(rngs, params=5, policy="match_shape")
    assert rngs.params.key.shape == (3,)


def test_streams_work_under_jit_and_vmap():
    rngs = Rngs(0)

    @jax.jit
    def draw(key, count):
        stream = RngStream(key, tag="x")
        stream.count[...] = count
        return jax.random.key_data(stream())

    assert draw(jax.random.key(0), jnp.uint32(0)).tolist() == keydata(rngs())
    keys = jax.random.split(jax.random.key(0), 3)
    out = jax.vmap(lambda k: jax.random.key_data(RngStream(k, tag="x")()))(keys)
    assert out.shape == (3, 2)

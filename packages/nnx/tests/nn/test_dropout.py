"""Dropout against a hand-built bernoulli mask."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait import nnx


def test_dropout_mask_and_scaling_match_bernoulli():
    drop = nnx.Dropout(0.25, rngs=nnx.Rngs(dropout=3))
    x = jnp.arange(1.0, 21.0).reshape(4, 5)
    key = jax.random.key(7)
    y = drop(x, rngs=key)
    keep = jax.random.bernoulli(key, 0.75, x.shape)
    np.testing.assert_allclose(y, jnp.where(keep, x / 0.75, 0.0), rtol=1e-6)


def test_dropout_broadcast_dims_share_mask():
    drop = nnx.Dropout(0.5, broadcast_dims=(0,), rngs=nnx.Rngs(dropout=0))
    y = drop(jnp.ones((6, 8)))
    assert (y == y[:1]).all()


def test_dropout_stream_advances_and_is_deterministic_per_seed():
    a = nnx.Dropout(0.5, rngs=nnx.Rngs(dropout=0))
    b = nnx.Dropout(0.5, rngs=nnx.Rngs(dropout=0))
    x = jnp.ones(64)
    first = a(x)
    np.testing.assert_array_equal(first, b(x))
    assert not (a(x) == first).all()


def test_dropout_deterministic_flags_and_edge_rates():
    x = jnp.ones(5)
    drop = nnx.Dropout(0.5, deterministic=True)
    assert (drop(x) == x).all()
    assert (nnx.Dropout(1.0, rngs=nnx.Rngs(0))(x) == 0).all()
    assert (nnx.Dropout(0.0)(x) == x).all()
    with pytest.raises(ValueError, match="has no random stream"):
        nnx.Dropout(0.5)(x)
    with pytest.raises(ValueError, match="deterministic is None"):
        nnx.Dropout(0.5, deterministic=None)(x)
    drop = nnx.Dropout(0.5, rngs=nnx.Rngs(0))
    drop.eval()
    assert (drop(x) == x).all()
    drop.set_view(deterministic=False)
    assert drop.deterministic is False

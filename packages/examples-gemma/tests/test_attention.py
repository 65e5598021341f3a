"""Attention math against a loop-by-loop NumPy reference: GQA/MQA/MHA, windows, soft-capping."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait.examples.gemma import attention_weights_mask, dot_product_attention


def reference_attention(q, k, v, q_pos, k_pos, *, window, softcap):
    """Written out per batch row, head and query: no einsum, no broadcasting tricks."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    batch, q_len, heads, dim = q.shape
    kv_heads = k.shape[2]
    group = heads // kv_heads
    out = np.zeros_like(q)
    for b in range(batch):
        for h in range(heads):
            kv = h // group
            for i in range(q_len):
                scores, values = [], []
                for j in range(k.shape[1]):
                    qp, kp = int(q_pos[b, i]), int(k_pos[b, j])
                    visible = kp >= 0 and kp <= qp and (window is None or kp > qp - window)
                    if visible:
                        s = float(q[b, i, h] @ k[b, j, kv])
                        if softcap is not None:
                            s = softcap * np.tanh(s / softcap)
                        scores.append(s)
                        values.append(v[b, j, kv])
                if scores:
                    w = np.exp(np.array(scores) - max(scores))
                    out[b, i, h] = (w / w.sum()) @ np.array(values)
    return out


@pytest.mark.parametrize(
    ("heads", "kv_heads", "window", "softcap"),
    [(4, 4, None, None), (4, 2, None, None), (4, 1, 3, None), (6, 2, 2, 2.0), (2, 1, None, 1.5)],
    ids=["mha", "gqa", "mqa-window", "gqa-window-softcap", "mqa-softcap"],
)
def test_attention_matches_reference(heads, kv_heads, window, softcap):
    kq, kk, kv = jax.random.split(jax.random.key(0), 3)
    batch, length, dim = 2, 7, 8
    q = jax.random.normal(kq, (batch, length, heads, dim))
    k = jax.random.normal(kk, (batch, length, kv_heads, dim))
    v = jax.random.normal(kv, (batch, length, kv_heads, dim))
    # Row 1 is left-padded by two tokens (position -1), row 0 is not.
    positions = np.array([np.arange(length), np.r_[-1, -1, np.arange(length - 2)]], np.int32)
    mask = attention_weights_mask(jnp.asarray(positions), jnp.asarray(positions), window=window)
    got = dot_product_attention(q, k, v, mask, logit_softcap=softcap)
    want = reference_attention(q, k, v, positions, positions, window=window, softcap=softcap)
    real = positions >= 0
    np.testing.assert_allclose(np.asarray(got)[real], want[real], rtol=1e-5, atol=1e-5)


def test_window_mask_counts_the_query_itself():
    pos = jnp.arange(6)[None]
    mask = np.asarray(attention_weights_mask(pos, pos, window=3)[0])
    assert mask.sum(axis=1).tolist() == [1, 2, 3, 3, 3, 3]
    assert not mask[5, 2] and mask[5, 3]


def test_padding_query_sees_nothing_but_stays_finite():
    pos = jnp.array([[-1, 0, 1]])
    mask = attention_weights_mask(pos, pos, window=None)
    assert not np.asarray(mask)[0, 0].any()
    out = dot_product_attention(jnp.ones((1, 3, 2, 4)), jnp.ones((1, 3, 1, 4)), jnp.ones((1, 3, 1, 4)), mask)
    assert np.isfinite(np.asarray(out)).all()

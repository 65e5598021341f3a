"""Google-layout Gemma weights written with Orbax load into Gemma and give the same forward."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from plait import checkpoint as ckpt
from plait import nnx
from plait.examples.gemma import Gemma, WeightLoadingError, load_gemma_weights


def google_layout_tree(config, *, gating_layout: str, seed: int = 0):
    """Random weights in the nesting and shapes of Google's Flax Gemma checkpoints."""
    rng = np.random.default_rng(seed)
    d, h, kv, hd, f = config.embed_dim, config.num_heads, config.num_kv_heads, config.head_dim, config.hidden_dim

    def w(*shape):
        return (rng.standard_normal(shape) * 0.3).astype(np.float32)

    transformer = {
        "embedder": {
            "input_embedding": w(config.vocab_size, d),
            # A multimodal checkpoint's extras, which a text model ignores.
            "mm_input_projection": {"w": w(5, d)},
        },
        "final_norm": {"scale": w(d)},
    }
    for i in range(config.num_layers):
        transformer[f"layer_{i}"] = {
            "attn": {
                "q_einsum": {"w": w(h, d, hd)},
                "kv_einsum": {"w": w(2, kv, d, hd)},
                "attn_vec_einsum": {"w": w(h, hd, d)},
                "_query_norm": {"scale": w(hd)},
                "_key_norm": {"scale": w(hd)},
            },
            "mlp": {
                "gating_einsum": {"w": w(2, f, d) if gating_layout == "hidden_first" else w(2, d, f)},
                "linear": {"w": w(f, d)},
            },
            "pre_attention_norm": {"scale": w(d)},
            "post_attention_norm": {"scale": w(d)},
            "pre_ffw_norm": {"scale": w(d)},
            "post_ffw_norm": {"scale": w(d)},
        }
    return {"transformer": transformer}


def assign_by_hand(config, tree, gating_layout):
    model = Gemma(config, rngs=nnx.Rngs(0))
    t = tree["transformer"]
    model.embedder.embedding.value = jnp.asarray(t["embedder"]["input_embedding"])
    model.final_norm.scale.value = jnp.asarray(t["final_norm"]["scale"])
    for i, block in enumerate(model.layers):
        src = t[f"layer_{i}"]
        block.attn.q_proj.value = jnp.asarray(src["attn"]["q_einsum"]["w"]).transpose(1, 0, 2)
        block.attn.kv_proj.value = jnp.asarray(src["attn"]["kv_einsum"]["w"]).transpose(0, 2, 1, 3)
        block.attn.o_proj.value = jnp.asarray(src["attn"]["attn_vec_einsum"]["w"])
        block.attn.query_norm.scale.value = jnp.asarray(src["attn"]["_query_norm"]["scale"])
        block.attn.key_norm.scale.value = jnp.asarray(src["attn"]["_key_norm"]["scale"])
        gating = jnp.asarray(src["mlp"]["gating_einsum"]["w"])
        block.mlp.gate_up_proj.value = gating.transpose(0, 2, 1) if gating_layout == "hidden_first" else gating
        block.mlp.down_proj.value = jnp.asarray(src["mlp"]["linear"]["w"])
        for name in ("pre_attention_norm", "post_attention_norm", "pre_ffw_norm", "post_ffw_norm"):
            getattr(block, name).scale.value = jnp.asarray(src[name]["scale"])
    return model


@pytest.mark.parametrize("gating_layout", ["hidden_first", "embed_first"])
def test_loaded_weights_give_the_hand_assigned_forward(micro_config, tmp_path, gating_layout, jitted_forward):
    tree = google_layout_tree(micro_config, gating_layout=gating_layout)
    path = tmp_path / "gemma"
    ocp.PyTreeCheckpointer().save(path, tree)
    loaded = load_gemma_weights(path, micro_config)
    expected = assign_by_hand(micro_config, tree, gating_layout)
    tokens = jnp.array([[1, 5, 9, 13, 17, 21, 25, 29]])
    np.testing.assert_allclose(jitted_forward(loaded)(tokens), jitted_forward(expected)(tokens), rtol=1e-6, atol=1e-6)
    for a, b in zip(jax.tree.leaves(nnx.state(loaded)), jax.tree.leaves(nnx.state(expected)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_gemma1_fused_qkv_is_split_into_q_and_kv(micro_config, tmp_path, jitted_forward):
    config = dataclasses.replace(micro_config, num_kv_heads=micro_config.num_heads)
    tree = google_layout_tree(config, gating_layout="embed_first")
    for i in range(config.num_layers):
        attn = tree["transformer"][f"layer_{i}"]["attn"]
        q, kv = attn.pop("q_einsum")["w"], attn.pop("kv_einsum")["w"]
        attn["qkv_einsum"] = {"w": np.concatenate([q[None], kv], axis=0)}  # (3, heads, d, hd)
    ocp.PyTreeCheckpointer().save(tmp_path / "g", tree)
    loaded = load_gemma_weights(tmp_path / "g", config)
    for i, block in enumerate(loaded.layers):
        fused = tree["transformer"][f"layer_{i}"]["attn"]["qkv_einsum"]["w"]
        np.testing.assert_array_equal(block.attn.q_proj[...], fused[0].transpose(1, 0, 2))
        np.testing.assert_array_equal(block.attn.kv_proj[...], fused[1:].transpose(0, 2, 1, 3))
    expected = assign_by_hand(config, google_layout_tree(config, gating_layout="embed_first"), "embed_first")
    tokens = jnp.array([[1, 5, 9, 13, 17, 21, 25, 29]])
    np.testing.assert_allclose(jitted_forward(loaded)(tokens), jitted_forward(expected)(tokens), rtol=1e-6, atol=1e-6)


def test_weights_cast_to_param_dtype(micro_config, tmp_path):
    ocp.PyTreeCheckpointer().save(tmp_path / "g", google_layout_tree(micro_config, gating_layout="hidden_first"))
    loaded = load_gemma_weights(tmp_path / "g", dataclasses.replace(micro_config, param_dtype="bfloat16"))
    assert {leaf.dtype for leaf in jax.tree.leaves(nnx.state(loaded))} == {jnp.dtype(jnp.bfloat16)}


def test_mismatched_config_names_the_paths(micro_config, tmp_path):
    ocp.PyTreeCheckpointer().save(tmp_path / "g", google_layout_tree(micro_config, gating_layout="hidden_first"))
    with pytest.raises(ckpt.CheckpointMismatchError, match="layers/2/"):
        load_gemma_weights(tmp_path / "g", dataclasses.replace(micro_config, num_layers=3))
    with pytest.raises(WeightLoadingError, match="gating_layout must be"):
        load_gemma_weights(tmp_path / "g", micro_config, gating_layout="sideways")

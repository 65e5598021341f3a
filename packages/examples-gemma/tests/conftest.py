import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402
import pytest  # noqa: E402
from plait import nnx  # noqa: E402

from plait.examples.gemma import ModelConfig  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def micro_config() -> ModelConfig:
    """Two layers (one local with a 3-token window, one global), GQA 4:2, every Gemma switch on."""
    return ModelConfig(
        vocab_size=61, num_layers=2, embed_dim=32, hidden_dim=48, num_heads=4, num_kv_heads=2, head_dim=8,
        attention_pattern=("local", "global"), sliding_window=3, rope_base_local=100.0,
        rope_base_global=1000.0, rope_scale_global=2.0, attn_logit_softcap=5.0, final_logit_softcap=3.0,
        use_qk_norm=True,
    )


def _randomize(model, seed: int = 1, scale: float = 0.3):
    """Gives the norm scales (zero at init) random values, so every Gemma switch matters."""
    state = nnx.state(model, nnx.Param)
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    new = [
        leaf + scale * jax.random.normal(k, leaf.shape, leaf.dtype) if leaf.ndim == 1 else leaf
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    nnx.update(model, jax.tree.unflatten(treedef, new))
    return model


@pytest.fixture
def randomized():
    return _randomize

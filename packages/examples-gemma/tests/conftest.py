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


def _jitted_forward(model):
    """``f(tokens, positions=None) -> logits`` compiled once per shape (eager ops compile per op)."""
    import jax.numpy as jnp

    graphdef, state = nnx.split(model)
    run = jax.jit(lambda s, t, p: nnx.merge(graphdef, s)(t, p))

    def forward(tokens, positions=None):
        tokens = jnp.asarray(tokens)
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        return run(state, tokens, jnp.asarray(positions))

    return forward


@pytest.fixture
def jitted_forward():
    return _jitted_forward


TEXTS = [
    "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 12,
    "Now is the winter of our discontent\nMade glorious summer by this sun of York;\n" * 12,
    "O Romeo, Romeo! wherefore art thou Romeo?\nDeny thy father and refuse thy name;\n" * 12,
]


@pytest.fixture(scope="session")
def texts() -> list[str]:
    return list(TEXTS)


def _micro_train_config():
    """A byte-level model small enough to compile in seconds; every dimension shards 2 and 4 ways.

    Tests share this one config so that the compiled steps are reused (the builder is cached).
    """
    from plait.examples.gemma import TrainConfig

    model = ModelConfig(
        vocab_size=264, num_layers=2, embed_dim=32, hidden_dim=64, num_heads=4, num_kv_heads=1, head_dim=8,
        attention_pattern=("local", "global"), sliding_window=8, attn_logit_softcap=20.0, final_logit_softcap=30.0,
    )
    return TrainConfig(
        model=model, tokenizer="byte", seq_len=16, batch_size=8, num_steps=8, warmup_steps=1, learning_rate=1e-2,
        eval_every=4, eval_batches=1, checkpoint_every=4, log_every=1, sample_tokens=0,
    )


MICRO_TRAIN_CONFIG = _micro_train_config()


@pytest.fixture(scope="session")
def micro_train_config():
    return MICRO_TRAIN_CONFIG

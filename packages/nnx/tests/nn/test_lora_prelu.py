"""LoRA, LoRALinear, LoRAParam, PReLU and the re-exported functions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from plait import nnx


def _close(a, b, tol=1e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


X = jax.random.normal(jax.random.key(0), (2, 3))


def test_lora_shapes_defaults_and_math():
    lora = nnx.LoRA(3, 2, 4, rngs=nnx.Rngs(0))
    assert isinstance(lora.lora_a, nnx.LoRAParam) and isinstance(lora.lora_a, nnx.Param)
    assert lora.lora_a.shape == (3, 2) and lora.lora_b.shape == (2, 4)
    rngs = nnx.Rngs(0)
    _close(lora.lora_a[...], nnx.initializers.he_uniform()(rngs.params(), (3, 2)))
    assert (lora.lora_b[...] == 0).all()
    lora.lora_b[...] = jnp.ones((2, 4))
    _close(lora(X), X @ lora.lora_a[...] @ lora.lora_b[...])


def test_lora_with_base_module_and_custom_param_type():
    class Frozen(nnx.Param):
        pass

    base = nnx.Linear(3, 4, rngs=nnx.Rngs(0))
    lora = nnx.LoRA(3, 2, 4, base_module=base, lora_param_type=Frozen, rngs=nnx.Rngs(1))
    assert type(lora.lora_a) is Frozen
    lora.lora_b[...] = jnp.ones((2, 4))
    _close(lora(X), base(X) + X @ lora.lora_a[...] @ lora.lora_b[...])


def test_lora_linear_adds_low_rank_branch_and_is_filterable():
    layer = nnx.LoRALinear(3, 4, lora_rank=2, use_bias=False, rngs=nnx.Rngs(0))
    assert layer.bias is None
    layer.lora.lora_b[...] = jnp.ones((2, 4))
    want = X @ layer.kernel[...] + X @ layer.lora.lora_a[...] @ layer.lora.lora_b[...]
    _close(layer(X), want)
    lora_leaves = jax.tree_util.tree_leaves(nnx.state(layer, nnx.LoRAParam))
    assert sorted(x.shape for x in lora_leaves) == [(2, 4), (3, 2)]


def test_lora_input_check():
    with pytest.raises(ValueError, match=r"LoRA received `x` with shape \(2, 5\)"):
        nnx.LoRA(3, 2, 4, rngs=nnx.Rngs(0))(jnp.ones((2, 5)))


def test_prelu():
    layer = nnx.PReLU(0.2)
    assert isinstance(layer.negative_slope, nnx.Param) and layer.negative_slope.shape == ()
    x = jnp.array([-3.0, -0.5, 0.0, 2.0])
    _close(layer(x), jnp.where(x >= 0, x, 0.2 * x))
    assert nnx.PReLU(param_dtype=jnp.bfloat16)(x.astype(jnp.bfloat16)).dtype == jnp.bfloat16


def test_reexported_activations_and_initializers():
    from plait.core import nn as core_nn

    assert nnx.relu is core_nn.relu and nnx.gelu is jax.nn.gelu and nnx.tanh is jax.nn.tanh
    assert nnx.initializers.zeros_init is core_nn.initializers.zeros_init
    assert nnx.initializers.lecun_normal is jax.nn.initializers.lecun_normal
    for name in nnx.nn.__all__:
        assert getattr(nnx, name) is getattr(nnx.nn, name), name

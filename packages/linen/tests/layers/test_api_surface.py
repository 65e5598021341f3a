"""The constructor fields (names, order, defaults) match Flax 0.12 Linen."""

import inspect

import jax.numpy as jnp
import pytest
from plait import linen as nn

# Field names in order, as Flax 0.12's dataclasses declare them (parent/name excluded).
FIELDS = {
    "Dense": "features use_bias dtype param_dtype precision kernel_init bias_init promote_dtype dot_general dot_general_cls",
    "DenseGeneral": "features axis batch_dims use_bias dtype param_dtype kernel_init bias_init precision promote_dtype dot_general dot_general_cls",
    "Einsum": "shape einsum_str use_bias dtype param_dtype precision kernel_init bias_init promote_dtype preferred_element_type",
    "Embed": "num_embeddings features dtype param_dtype embedding_init promote_dtype",
    "Conv": "features kernel_size strides padding input_dilation kernel_dilation feature_group_count use_bias mask dtype param_dtype precision kernel_init bias_init promote_dtype conv_general_dilated conv_general_dilated_cls",
    "ConvLocal": "features kernel_size strides padding input_dilation kernel_dilation feature_group_count use_bias mask dtype param_dtype precision kernel_init bias_init promote_dtype conv_general_dilated conv_general_dilated_cls",
    "ConvTranspose": "features kernel_size strides padding kernel_dilation use_bias mask dtype param_dtype precision kernel_init bias_init transpose_kernel promote_dtype preferred_element_type",
    "BatchNorm": "use_running_average axis momentum epsilon dtype param_dtype use_bias use_scale bias_init scale_init axis_name axis_index_groups use_fast_variance force_float32_reductions",
    "LayerNorm": "epsilon dtype param_dtype use_bias use_scale bias_init scale_init reduction_axes feature_axes axis_name axis_index_groups use_fast_variance force_float32_reductions",
    "RMSNorm": "epsilon dtype param_dtype use_scale scale_init reduction_axes feature_axes axis_name axis_index_groups use_fast_variance force_float32_reductions",
    "GroupNorm": "num_groups group_size epsilon dtype param_dtype use_bias use_scale bias_init scale_init reduction_axes axis_name axis_index_groups use_fast_variance force_float32_reductions",
    "InstanceNorm": "epsilon dtype param_dtype use_bias use_scale bias_init scale_init feature_axes axis_name axis_index_groups use_fast_variance force_float32_reductions",
    "SpectralNorm": "layer_instance n_steps epsilon dtype param_dtype error_on_non_matrix collection_name",
    "WeightNorm": "layer_instance epsilon dtype param_dtype use_scale scale_init feature_axes variable_filter",
    "Dropout": "rate broadcast_dims deterministic rng_collection",
    "PReLU": "param_dtype negative_slope_init",
    "MultiHeadDotProductAttention": "num_heads dtype param_dtype qkv_features out_features broadcast_dropout dropout_rate deterministic precision kernel_init out_kernel_init bias_init out_bias_init use_bias attention_fn decode normalize_qk force_fp32_for_softmax qkv_dot_general out_dot_general qkv_dot_general_cls out_dot_general_cls qk_attn_weights_einsum_cls attn_weights_value_einsum_cls",
    "LSTMCell": "features gate_fn activation_fn kernel_init recurrent_kernel_init bias_init dtype param_dtype carry_init",
    "OptimizedLSTMCell": "features gate_fn activation_fn kernel_init recurrent_kernel_init bias_init dtype param_dtype carry_init",
    "GRUCell": "features gate_fn activation_fn kernel_init recurrent_kernel_init bias_init dtype param_dtype carry_init",
    "MGUCell": "features gate_fn activation_fn kernel_init recurrent_kernel_init forget_bias_init activation_bias_init dtype param_dtype carry_init reset_gate",
    "SimpleCell": "features activation_fn kernel_init recurrent_kernel_init bias_init dtype param_dtype carry_init residual",
    "ConvLSTMCell": "features kernel_size strides padding use_bias dtype param_dtype carry_init",
    "RNN": "cell time_major return_carry reverse keep_order unroll variable_axes variable_broadcast variable_carry split_rngs",
    "Bidirectional": "forward_rnn backward_rnn merge_fn time_major return_carry",
}
FIELDS["MultiHeadAttention"] = FIELDS["SelfAttention"] = FIELDS["MultiHeadDotProductAttention"]


def own_fields(cls):
    return [p for p in inspect.signature(cls).parameters if p not in ("parent", "name")]


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_fields_match_flax(name):
    assert own_fields(getattr(nn, name)) == FIELDS[name].split()


def test_selected_defaults():
    assert nn.BatchNorm().momentum == 0.99 and nn.BatchNorm().epsilon == 1e-5
    assert nn.LayerNorm().epsilon == 1e-6
    assert nn.GroupNorm().num_groups == 32
    assert nn.Conv(1, 3).padding == "SAME" and nn.Conv(1, 3).strides == 1
    assert nn.Dense(1).param_dtype == jnp.float32
    assert nn.Dropout(0.1).rng_collection == "dropout"
    assert dict(nn.RNN(nn.LSTMCell(2)).split_rngs) == {"params": False}
    assert nn.RNN(nn.LSTMCell(2)).variable_broadcast == "params"
    assert nn.WeightNorm(nn.Dense(1)).variable_filter == {"kernel"}
    assert nn.MGUCell(2).reset_gate is True


def test_every_exported_name_resolves():
    from plait.linen import layers

    for name in layers.__all__:
        assert getattr(nn, name) is getattr(layers, name), name

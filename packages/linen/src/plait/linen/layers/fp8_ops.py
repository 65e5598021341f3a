"""FP8 training with delayed scaling (``flax.linen.fp8_ops``).

The modules (``Fp8DirectDotGeneralOp`` a.k.a. ``Fp8DotGeneral``, ``Fp8DotGeneralOp``,
``NANOOFp8DotGeneralOp``, ``Fp8Einsum``) are also exported by ``plait.linen``; this
module adds the functions they are built from: quantization (``quantize``,
``dequantize``, ``qdq``), the delayed-scaling update (``compute_scale``,
``compute_amax_history``, ``update_fp8_meta``), the custom-VJP building blocks
(``in_qdq``, ``out_qdq``, ``in_q``, ``out_dq``, ``quantized_dot`` with their ``_fwd`` /
``_bwd`` rules), ``fp8_scaled_dot_general``, and ``fm32``, a float32 look-alike dtype
whose gradients combine by ``max`` (for fp8 state used more than once per step).

The scale and amax-history variables live in the collection ``OVERWRITE_WITH_GRADIENT``:
their gradient is their new value, to be stored instead of applied by an optimizer
(``TrainState.apply_gradients`` does this).

Examples:
  >>> import jax.numpy as jnp
  >>> from plait.linen import fp8_ops
  >>> fp8_ops.qdq(jnp.array([0.3, 1000.0]), jnp.float8_e4m3fn, jnp.array([1.0]),
  ...             jnp.float32).tolist()  # rounded to 3 mantissa bits; saturated at 448
  [0.3125, 448.0]
"""

from __future__ import annotations

from ._fp8 import OVERWRITE_WITH_GRADIENT as OVERWRITE_WITH_GRADIENT
from ._fp8 import DType as DType
from ._fp8 import Fp8DirectDotGeneralOp as Fp8DirectDotGeneralOp
from ._fp8 import Fp8DotGeneral as Fp8DotGeneral
from ._fp8 import Fp8DotGeneralBase as Fp8DotGeneralBase
from ._fp8 import Fp8DotGeneralOp as Fp8DotGeneralOp
from ._fp8 import Fp8Einsum as Fp8Einsum
from ._fp8 import NANOOFp8DotGeneralOp as NANOOFp8DotGeneralOp
from ._fp8_dot import dot_general_transpose_lhs as dot_general_transpose_lhs
from ._fp8_dot import dot_general_transpose_rhs as dot_general_transpose_rhs
from ._fp8_dot import dot_general_with_precision as dot_general_with_precision
from ._fp8_dot import dot_general_with_precision_jvp as dot_general_with_precision_jvp
from ._fp8_dot import fp8_scaled_dot_general as fp8_scaled_dot_general
from ._fp8_dot import quantized_dot as quantized_dot
from ._fp8_dot import quantized_dot_bwd as quantized_dot_bwd
from ._fp8_dot import quantized_dot_fwd as quantized_dot_fwd
from ._fp8_meta import CAN_USE_EARRAY as CAN_USE_EARRAY
from ._fp8_meta import Fp8MetaTyRules as Fp8MetaTyRules
from ._fp8_meta import fm32 as fm32
from ._fp8_meta import fp8_meta_dtype as fp8_meta_dtype
from ._fp8_meta import fp8_meta_dtype_wrapper as fp8_meta_dtype_wrapper
from ._fp8_meta import fp32_max_grad as fp32_max_grad
from ._fp8_quant import compute_amax_history as compute_amax_history
from ._fp8_quant import compute_scale as compute_scale
from ._fp8_quant import dequantize as dequantize
from ._fp8_quant import get_fp8_max as get_fp8_max
from ._fp8_quant import in_q as in_q
from ._fp8_quant import in_q_bwd as in_q_bwd
from ._fp8_quant import in_q_fwd as in_q_fwd
from ._fp8_quant import in_qdq as in_qdq
from ._fp8_quant import in_qdq_bwd as in_qdq_bwd
from ._fp8_quant import in_qdq_fwd as in_qdq_fwd
from ._fp8_quant import out_dq as out_dq
from ._fp8_quant import out_dq_bwd as out_dq_bwd
from ._fp8_quant import out_dq_fwd as out_dq_fwd
from ._fp8_quant import out_qdq as out_qdq
from ._fp8_quant import out_qdq_bwd as out_qdq_bwd
from ._fp8_quant import out_qdq_fwd as out_qdq_fwd
from ._fp8_quant import qdq as qdq
from ._fp8_quant import quantize as quantize
from ._fp8_quant import quantize_dequantize_update as quantize_dequantize_update
from ._fp8_quant import update_fp8_meta as update_fp8_meta

__all__ = [
    "CAN_USE_EARRAY",
    "compute_amax_history",
    "compute_scale",
    "dequantize",
    "dot_general_transpose_lhs",
    "dot_general_transpose_rhs",
    "dot_general_with_precision",
    "dot_general_with_precision_jvp",
    "DType",
    "fm32",
    "Fp8DirectDotGeneralOp",
    "Fp8DotGeneral",
    "Fp8DotGeneralBase",
    "Fp8DotGeneralOp",
    "Fp8Einsum",
    "fp8_meta_dtype",
    "fp8_meta_dtype_wrapper",
    "fp8_scaled_dot_general",
    "Fp8MetaTyRules",
    "fp32_max_grad",
    "get_fp8_max",
    "in_q",
    "in_q_bwd",
    "in_q_fwd",
    "in_qdq",
    "in_qdq_bwd",
    "in_qdq_fwd",
    "NANOOFp8DotGeneralOp",
    "out_dq",
    "out_dq_bwd",
    "out_dq_fwd",
    "out_qdq",
    "out_qdq_bwd",
    "out_qdq_fwd",
    "OVERWRITE_WITH_GRADIENT",
    "qdq",
    "quantize",
    "quantize_dequantize_update",
    "quantized_dot",
    "quantized_dot_bwd",
    "quantized_dot_fwd",
    "update_fp8_meta",
]

"""Recurrent cells: one time step ``(carry, x) -> (new_carry, y)``.

Parameter names and shapes follow Flax so checkpoints carry over: e.g. the LSTM
keeps one Dense per gate and input (``ii``, ``if``, ``ig``, ``io``, no bias) or
hidden state (``hi``, ``hf``, ``hg``, ``ho``, with bias).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from plait.core.nn import initializers
from plait.core.nn.activations import sigmoid, tanh
from plait.core.nn.dtypes import promote_dtype_args as promote_dtype

from ._base import Module, compact, nowrap
from ._common import describe
from ._conv import Conv
from ._errors import LayerShapeError
from ._linear import Dense, default_kernel_init

Array = Any
Dtype = Any
Carry = Any


def _check_carry(module: Module, carry_leaf: Array, inputs: Array, features: int) -> None:
    """The carry must have the cell's width and the inputs' batch shape."""
    expected = tuple(jnp.shape(inputs)[:-1]) + (features,)
    if tuple(jnp.shape(carry_leaf)) != expected:
        raise LayerShapeError(
            f"{describe(module)}: the carry has shape {tuple(jnp.shape(carry_leaf))}, but "
            f"inputs of shape {tuple(jnp.shape(inputs))} and features={features} need "
            f"{expected}. Build the carry with "
            f"`cell.initialize_carry(key, inputs.shape)`."
        )


class RNNCellBase(Module):
    """Base class of recurrent cells.

    Subclasses implement ``__call__(carry, inputs) -> (carry, outputs)``,
    ``initialize_carry(rng, input_shape)`` and ``num_feature_axes``.
    """

    @nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]) -> Carry:
        """Returns the initial carry for inputs of shape ``input_shape`` (one step)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not define initialize_carry(rng, input_shape)."
        )

    @property
    def num_feature_axes(self) -> int:
        """How many trailing axes of one step's inputs are features (not batch)."""
        raise NotImplementedError(f"{type(self).__name__} does not define num_feature_axes.")


class LSTMCell(RNNCellBase):
    """Long short-term memory cell.

    ``i, f, o = gate(W_i* x + W_h* h + b)``, ``g = act(W_ig x + W_hg h + b)``,
    ``c' = f c + i g``, ``h' = o act(c')``. The carry is ``(c, h)``.

    Attributes:
      features: the width of the hidden state.
      gate_fn: activation of the gates (default sigmoid).
      activation_fn: activation of the candidate and output (default tanh).
      kernel_init: initializer of the input kernels.
      recurrent_kernel_init: initializer of the hidden-state kernels (orthogonal).
      bias_init: initializer of the biases.
      dtype: the dtype of the computation (default: inferred).
      param_dtype: the dtype of the parameters.
      carry_init: initializer of the carry in ``initialize_carry``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> cell = nn.LSTMCell(features=4)
      >>> x = jnp.ones((2, 3))
      >>> carry = cell.initialize_carry(jax.random.key(0), x.shape)
      >>> variables = cell.init(jax.random.key(1), carry, x)
      >>> (c, h), y = cell.apply(variables, carry, x)
      >>> h.shape
      (2, 4)
    """

    features: int
    gate_fn: Callable[..., Any] = sigmoid
    activation_fn: Callable[..., Any] = tanh
    kernel_init: Any = default_kernel_init
    recurrent_kernel_init: Any = initializers.orthogonal()
    bias_init: Any = initializers.zeros_init()
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    carry_init: Any = initializers.zeros_init()

    @compact
    def __call__(self, carry, inputs):
        """One LSTM step: returns ``((c', h'), h')``."""
        c, h = carry
        _check_carry(self, h, inputs, self.features)
        hidden = h.shape[-1]
        # The input and hidden projections are summed, so only one needs a bias.
        dense_h = functools.partial(
            Dense,
            features=hidden,
            use_bias=True,
            kernel_init=self.recurrent_kernel_init,
            bias_init=self.bias_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        dense_i = functools.partial(
            Dense,
            features=hidden,
            use_bias=False,
            kernel_init=self.kernel_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        i = self.gate_fn(dense_i(name="ii")(inputs) + dense_h(name="hi")(h))
        f = self.gate_fn(dense_i(name="if")(inputs) + dense_h(name="hf")(h))
        g = self.activation_fn(dense_i(name="ig")(inputs) + dense_h(name="hg")(h))
        o = self.gate_fn(dense_i(name="io")(inputs) + dense_h(name="ho")(h))
        new_c = f * c + i * g
        new_h = o * self.activation_fn(new_c)
        return (new_c, new_h), new_h

    @nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]):
        """``(c, h)``, each ``input_shape[:-1] + (features,)``."""
        shape = tuple(input_shape[:-1]) + (self.features,)
        key_c, key_h = jax.random.split(rng)
        return (
            self.carry_init(key_c, shape, self.param_dtype),
            self.carry_init(key_h, shape, self.param_dtype),
        )

    @property
    def num_feature_axes(self) -> int:
        return 1


class DenseParams(Module):
    """Creates the ``kernel`` (and ``bias``) of a Dense layer without applying it.

    Used by :class:`OptimizedLSTMCell` to keep :class:`LSTMCell`'s parameter layout
    while computing all gates with one matmul.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait.linen.layers import DenseParams
      >>> layer = DenseParams(features=3)
      >>> (k, b), _ = layer.init_with_output(jax.random.key(0), jnp.ones((2, 4)))
      >>> k.shape, b.shape
      ((4, 3), (3,))
    """

    features: int
    use_bias: bool = True
    param_dtype: Dtype = jnp.float32
    precision: Any = None
    kernel_init: Any = default_kernel_init
    bias_init: Any = initializers.zeros_init()

    @compact
    def __call__(self, inputs: Array) -> tuple[Array, Array | None]:
        """Returns ``(kernel, bias or None)`` for inputs with last axis ``in``."""
        kernel = self.param(
            "kernel", self.kernel_init, (jnp.shape(inputs)[-1], self.features), self.param_dtype
        )
        bias = (
            self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias
            else None
        )
        return kernel, bias


class OptimizedLSTMCell(RNNCellBase):
    """LSTM cell computing the four gates with one matmul per operand.

    Same math and same parameters (names and shapes) as :class:`LSTMCell`, so the
    two are interchangeable on one checkpoint; usually faster for hidden sizes up
    to about 2048.

    Attributes: as :class:`LSTMCell`.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> cell = nn.OptimizedLSTMCell(features=4)
      >>> x = jnp.ones((2, 3))
      >>> carry = cell.initialize_carry(jax.random.key(0), x.shape)
      >>> variables = cell.init(jax.random.key(1), carry, x)
      >>> sorted(variables['params'])
      ['hf', 'hg', 'hi', 'ho', 'if', 'ig', 'ii', 'io']
    """

    features: int
    gate_fn: Callable[..., Any] = sigmoid
    activation_fn: Callable[..., Any] = tanh
    kernel_init: Any = default_kernel_init
    recurrent_kernel_init: Any = initializers.orthogonal()
    bias_init: Any = initializers.zeros_init()
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    carry_init: Any = initializers.zeros_init()

    @compact
    def __call__(self, carry, inputs):
        """One LSTM step: returns ``((c', h'), h')``."""
        c, h = carry
        _check_carry(self, h, inputs, self.features)
        hidden = h.shape[-1]

        def fused(x: Array, params: Mapping[str, tuple[Array, Array | None]], use_bias: bool):
            # One matmul with the gate kernels side by side, then split per gate.
            kernels = [k for k, _ in params.values()]
            kernel = jnp.concatenate(kernels, axis=-1)
            bias = jnp.concatenate([b for _, b in params.values()], axis=-1) if use_bias else None
            x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
            y = jnp.dot(x, kernel)
            if bias is not None:
                y += jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
            splits = np.cumsum([k.shape[-1] for k in kernels[:-1]])
            return dict(zip(params.keys(), jnp.split(y, splits, axis=-1), strict=True))

        params_i, params_h = {}, {}
        for gate in ("i", "f", "g", "o"):
            params_i[gate] = DenseParams(
                features=hidden,
                use_bias=False,
                param_dtype=self.param_dtype,
                kernel_init=self.kernel_init,
                bias_init=self.bias_init,
                name=f"i{gate}",
            )(inputs)
            params_h[gate] = DenseParams(
                features=hidden,
                use_bias=True,
                param_dtype=self.param_dtype,
                kernel_init=self.recurrent_kernel_init,
                bias_init=self.bias_init,
                name=f"h{gate}",
            )(h)
        from_h = fused(h, params_h, use_bias=True)
        from_i = fused(inputs, params_i, use_bias=False)
        i = self.gate_fn(from_h["i"] + from_i["i"])
        f = self.gate_fn(from_h["f"] + from_i["f"])
        g = self.activation_fn(from_h["g"] + from_i["g"])
        o = self.gate_fn(from_h["o"] + from_i["o"])
        new_c = f * c + i * g
        new_h = o * self.activation_fn(new_c)
        return (new_c, new_h), new_h

    @nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]):
        """``(c, h)``, each ``input_shape[:-1] + (features,)``."""
        shape = tuple(input_shape[:-1]) + (self.features,)
        key_c, key_h = jax.random.split(rng)
        return (
            self.carry_init(key_c, shape, self.param_dtype),
            self.carry_init(key_h, shape, self.param_dtype),
        )

    @property
    def num_feature_axes(self) -> int:
        return 1


class SimpleCell(RNNCellBase):
    """Elman cell: ``h' = act(W_i x + b + W_h h [+ h])``.

    Attributes:
      features: the width of the hidden state.
      activation_fn: the activation (default tanh).
      kernel_init: initializer of the input kernel (Dense ``i``, with bias).
      recurrent_kernel_init: initializer of the hidden kernel (Dense ``h``).
      bias_init: initializer of the bias.
      dtype: the dtype of the computation (default: inferred).
      param_dtype: the dtype of the parameters.
      carry_init: initializer of the carry.
      residual: add ``h`` before the activation.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> cell = nn.SimpleCell(features=4)
      >>> x = jnp.ones((2, 3))
      >>> h = cell.initialize_carry(jax.random.key(0), x.shape)
      >>> h2, y = cell.apply(cell.init(jax.random.key(1), h, x), h, x)
      >>> h2.shape
      (2, 4)
    """

    features: int
    activation_fn: Callable[..., Any] = tanh
    kernel_init: Any = default_kernel_init
    recurrent_kernel_init: Any = initializers.orthogonal()
    bias_init: Any = initializers.zeros_init()
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    carry_init: Any = initializers.zeros_init()
    residual: bool = False

    @compact
    def __call__(self, carry, inputs):
        """One step: returns ``(h', h')``."""
        _check_carry(self, carry, inputs, self.features)
        hidden = carry.shape[-1]
        new_carry = Dense(
            features=hidden,
            use_bias=True,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            name="i",
        )(inputs) + Dense(
            features=hidden,
            use_bias=False,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=self.recurrent_kernel_init,
            name="h",
        )(carry)
        if self.residual:
            new_carry += carry
        new_carry = self.activation_fn(new_carry)
        return new_carry, new_carry

    @nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]):
        """``h`` of shape ``input_shape[:-1] + (features,)``."""
        shape = tuple(input_shape[:-1]) + (self.features,)
        return self.carry_init(rng, shape, self.param_dtype)

    @property
    def num_feature_axes(self) -> int:
        return 1


class GRUCell(RNNCellBase):
    """Gated recurrent unit.

    ``r = gate(W_ir x + b_ir + W_hr h)``, ``z = gate(W_iz x + b_iz + W_hz h)``,
    ``n = act(W_in x + b_in + r (W_hn h + b_hn))``, ``h' = (1 - z) n + z h``.

    Attributes:
      features: the width of the hidden state.
      gate_fn: activation of the gates (default sigmoid).
      activation_fn: activation of the candidate and output (default tanh).
      kernel_init: initializer of the input kernels.
      recurrent_kernel_init: initializer of the hidden-state kernels (orthogonal).
      bias_init: initializer of the biases.
      dtype: the dtype of the computation (default: inferred).
      param_dtype: the dtype of the parameters.
      carry_init: initializer of the carry in ``initialize_carry``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> cell = nn.GRUCell(features=4)
      >>> x = jnp.ones((2, 3))
      >>> h = cell.initialize_carry(jax.random.key(0), x.shape)
      >>> h2, y = cell.apply(cell.init(jax.random.key(1), h, x), h, x)
      >>> y.shape
      (2, 4)
    """

    features: int
    gate_fn: Callable[..., Any] = sigmoid
    activation_fn: Callable[..., Any] = tanh
    kernel_init: Any = default_kernel_init
    recurrent_kernel_init: Any = initializers.orthogonal()
    bias_init: Any = initializers.zeros_init()
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    carry_init: Any = initializers.zeros_init()

    @compact
    def __call__(self, carry, inputs):
        """One GRU step: returns ``(h', h')``."""
        h = carry
        _check_carry(self, h, inputs, self.features)
        hidden = h.shape[-1]
        dense_h = functools.partial(
            Dense,
            features=hidden,
            use_bias=False,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=self.recurrent_kernel_init,
            bias_init=self.bias_init,
        )
        dense_i = functools.partial(
            Dense,
            features=hidden,
            use_bias=True,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
        )
        r = self.gate_fn(dense_i(name="ir")(inputs) + dense_h(name="hr")(h))
        z = self.gate_fn(dense_i(name="iz")(inputs) + dense_h(name="hz")(h))
        # The reset gate multiplies the hidden projection, so it needs its own bias.
        n = self.activation_fn(
            dense_i(name="in")(inputs) + r * dense_h(name="hn", use_bias=True)(h)
        )
        new_h = (1.0 - z) * n + z * h
        return new_h, new_h

    @nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]):
        """``h`` of shape ``input_shape[:-1] + (features,)``."""
        shape = tuple(input_shape[:-1]) + (self.features,)
        return self.carry_init(rng, shape, self.param_dtype)

    @property
    def num_feature_axes(self) -> int:
        return 1


class MGUCell(RNNCellBase):
    """Minimal gated unit.

    ``f = gate(W_if x + b_if + W_hf h)``, ``n = act(W_in x + b_in + f (W_hn h +
    b_hn))`` (without ``f (...)``'s gating and bias when ``reset_gate=False``),
    ``h' = (1 - f) n + f h``.

    Attributes:
      features: the width of the hidden state.
      gate_fn: activation of the forget gate.
      activation_fn: activation of the candidate.
      kernel_init: initializer of the input kernels.
      recurrent_kernel_init: initializer of the hidden kernels.
      forget_bias_init: initializer of the forget-gate bias (ones, which eases
        gradient flow early in training).
      activation_bias_init: initializer of the candidate biases.
      dtype: the dtype of the computation (default: inferred).
      param_dtype: the dtype of the parameters.
      carry_init: initializer of the carry.
      reset_gate: gate the hidden projection of the candidate with ``f``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> cell = nn.MGUCell(features=4)
      >>> x = jnp.ones((2, 3))
      >>> h = cell.initialize_carry(jax.random.key(0), x.shape)
      >>> variables = cell.init(jax.random.key(1), h, x)
      >>> sorted(variables['params'])
      ['hf', 'hn', 'if', 'in']
    """

    features: int
    gate_fn: Callable[..., Any] = sigmoid
    activation_fn: Callable[..., Any] = tanh
    kernel_init: Any = default_kernel_init
    recurrent_kernel_init: Any = initializers.orthogonal()
    forget_bias_init: Any = initializers.ones_init()
    activation_bias_init: Any = initializers.zeros_init()
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    carry_init: Any = initializers.zeros_init()
    reset_gate: bool = True

    @compact
    def __call__(self, carry, inputs):
        """One MGU step: returns ``(h', h')``."""
        h = carry
        _check_carry(self, h, inputs, self.features)
        hidden = h.shape[-1]
        dense_h = functools.partial(
            Dense,
            features=hidden,
            use_bias=False,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=self.recurrent_kernel_init,
            bias_init=self.activation_bias_init,
        )
        dense_i = functools.partial(
            Dense,
            features=hidden,
            use_bias=True,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=self.kernel_init,
        )
        f = self.gate_fn(
            dense_i(name="if", bias_init=self.forget_bias_init)(inputs) + dense_h(name="hf")(h)
        )
        x = dense_h(name="hn", use_bias=self.reset_gate)(h)
        if self.reset_gate:
            x *= f
        n = self.activation_fn(dense_i(name="in", bias_init=self.activation_bias_init)(inputs) + x)
        new_h = (1.0 - f) * n + f * h
        return new_h, new_h

    @nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]):
        """``h`` of shape ``input_shape[:-1] + (features,)``."""
        shape = tuple(input_shape[:-1]) + (self.features,)
        return self.carry_init(rng, shape, self.param_dtype)

    @property
    def num_feature_axes(self) -> int:
        return 1


class ConvLSTMCell(RNNCellBase):
    """Convolutional LSTM cell (Shi et al., 2015).

    The gates come from two convolutions, ``ih`` on the inputs and ``hh`` on the
    hidden state, each with ``4 * features`` output channels split as ``(i, g, f,
    o)``; the forget gate gets ``+1`` before its sigmoid so the cell forgets slowly
    at the start of training.

    Attributes:
      features: channels of the hidden state.
      kernel_size: the convolution window.
      strides: the convolution strides.
      padding: the convolution padding.
      use_bias: whether the convolutions have biases.
      dtype: the dtype of the computation (default: inferred).
      param_dtype: the dtype of the parameters.
      carry_init: initializer of the carry.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> cell = nn.ConvLSTMCell(features=4, kernel_size=(3, 3))
      >>> x = jnp.ones((2, 5, 5, 3))
      >>> carry = cell.initialize_carry(jax.random.key(0), x.shape)
      >>> (c, h), y = cell.apply(cell.init(jax.random.key(1), carry, x), carry, x)
      >>> y.shape
      (2, 5, 5, 4)
    """

    features: int
    kernel_size: Sequence[int]
    strides: Sequence[int] | None = None
    padding: str | Sequence[tuple[int, int]] = "SAME"
    use_bias: bool = True
    dtype: Dtype | None = None
    param_dtype: Dtype = jnp.float32
    carry_init: Any = initializers.zeros_init()

    @compact
    def __call__(self, carry, inputs):
        """One step: returns ``((c', h'), h')``."""
        c, h = carry
        conv = functools.partial(
            Conv,
            features=4 * self.features,
            kernel_size=self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            use_bias=self.use_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        gates = conv(name="ih")(inputs) + conv(name="hh")(h)
        i, g, f, o = jnp.split(gates, 4, axis=-1)
        f = sigmoid(f + 1)
        new_c = f * c + sigmoid(i) * jnp.tanh(g)
        new_h = sigmoid(o) * jnp.tanh(new_c)
        return (new_c, new_h), new_h

    @nowrap
    def initialize_carry(self, rng: jax.Array, input_shape: tuple[int, ...]):
        """``(c, h)``, each ``input_shape[:-1] + (features,)``."""
        shape = tuple(input_shape[:-1]) + (self.features,)
        key_c, key_h = jax.random.split(rng)
        return (
            self.carry_init(key_c, shape, self.param_dtype),
            self.carry_init(key_h, shape, self.param_dtype),
        )

    @property
    def num_feature_axes(self) -> int:
        return len(self.kernel_size) + 1

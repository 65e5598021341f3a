"""Recurrent cells and the layers that run them over sequences (Flax NNX ``nnx.nn.recurrent``).

``RNN`` scans a cell over the time axis with ``jax.lax.scan``: the cell's state
(parameters, and any Variables the cell updates) is split off with ``plait.core.split``,
carried through the scan, and written back into the cell afterwards, so a cell may
update its own Variables at each step.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

import jax
import jax.numpy as jnp
from plait.core import Rngs, RngStream, merge, split, update
from plait.core.nn import dtypes, initializers
from plait.core.nn.activations import sigmoid, tanh

from .._errors import check_feature_axis, shape_error
from .._module import Module
from ._layer_helpers import keep_arguments
from ._linear import Linear

Array = jax.Array
Carry = Any
Output = Any
A = TypeVar("A")

default_kernel_init = initializers.lecun_normal()
default_bias_init = initializers.zeros_init()
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_LECUN_NORMAL = initializers.lecun_normal()
_ORTHOGONAL = initializers.orthogonal()
_ZEROS_INIT = initializers.zeros_init()
_log = logging.getLogger(__name__)


def modified_orthogonal(key: Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> Array:
    """Orthogonal initializer drawn in float32 and cast, so half precision works.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> w = modified_orthogonal(jax.random.key(0), (3, 3), jnp.bfloat16)
      >>> w.dtype
      dtype(bfloat16)
    """
    return initializers.orthogonal()(key, shape).astype(dtype)


def _carry_key(rngs: Any) -> Any:
    if isinstance(rngs, Rngs):
        return rngs["carry"]()
    if isinstance(rngs, RngStream):
        return rngs()
    return rngs  # a key array, or None for deterministic carry initializers


class RNNCellBase(Module):
    """Base class of recurrent cells: ``cell(carry, x) -> (new_carry, y)``.

    Subclasses define ``__call__``, ``initialize_carry(input_shape, rngs=None,
    carry_init=None)`` and ``num_feature_axes``.
    """

    hidden_features: int
    in_features: int
    param_dtype: Any
    carry_init: Any
    rngs: Any

    def initialize_carry(
        self,
        input_shape: tuple[int, ...],
        rngs: Rngs | RngStream | None = None,
        carry_init: Any = None,
    ) -> Carry:
        """Returns the initial carry for inputs of ``input_shape`` (batch..., features)."""
        shape = tuple(input_shape[:-1]) + (self.hidden_features,)
        return self._new_state(shape, rngs, carry_init)

    def _new_state(self, shape: tuple[int, ...], rngs: Any, carry_init: Any) -> Array:
        init = carry_init if carry_init is not None else self.carry_init
        source = rngs if rngs is not None else self.rngs
        key = _carry_key(source)
        try:
            return init(key, shape, self.param_dtype)
        except (TypeError, ValueError) as err:
            if key is not None:
                raise
            raise ValueError(
                f"{type(self).__name__}.initialize_carry: the carry initializer needs a random "
                "key but no rngs were given. Pass rngs=nnx.Rngs(carry=...) to "
                "initialize_carry, or construct the cell with keep_rngs=True."
            ) from err

    def _check_inputs(self, inputs: Array) -> None:
        check_feature_axis(self, inputs, size=self.in_features, param="in_features")

    def __call__(self, carry: Carry, inputs: Array) -> tuple[Carry, Array]:
        """One step: ``(carry, x) -> (new_carry, y)``."""
        raise NotImplementedError(f"{type(self).__name__} must define __call__")

    @property
    def num_feature_axes(self) -> int:
        """Number of trailing feature axes of the cell's inputs (1 for dense cells)."""
        return 1


# The constructor arguments each cell keeps as attributes, in the order it stores them.
_GATED_CELL_ARGUMENTS = (
    "in_features hidden_features gate_fn activation_fn kernel_init recurrent_kernel_init"
    " bias_init dtype param_dtype carry_init promote_dtype"
)
_SIMPLE_CELL_ARGUMENTS = (
    "in_features hidden_features dtype param_dtype carry_init residual activation_fn"
    " kernel_init recurrent_kernel_init bias_init promote_dtype"
)


def _configure_cell(cell: RNNCellBase, arguments: Mapping[str, Any], names: str) -> None:
    """Keeps the constructor ``arguments`` named in ``names`` on ``cell``, then its rngs."""
    carry_init = arguments["carry_init"]
    # Each cell gets its own zeros initializer, as it always has: the initializer is part
    # of the cell's static structure.
    if carry_init is None:
        carry_init = initializers.zeros_init()
    keep_arguments(cell, {**arguments, "carry_init": carry_init}, names)
    # Only a cell asked to keep its streams can draw random carries without being passed rngs.
    cell.rngs = arguments["rngs"].fork() if arguments["keep_rngs"] else None


class _Projections:
    """Builds a cell's ``Linear`` layers from the settings already stored on the cell.

    Input projections read ``x`` and use ``kernel_init``; hidden projections read the
    carry and use ``recurrent_kernel_init``. All share the cell's dtypes and rng streams,
    so the order of the calls fixes which random key each kernel gets.
    """

    def __init__(
        self,
        cell: RNNCellBase,
        rngs: Rngs,
        kernel_metadata: Mapping[str, Any],
        recurrent_kernel_metadata: Mapping[str, Any],
        bias_metadata: Mapping[str, Any],
    ):
        self.cell = cell
        self.rngs = rngs
        self.kernel_metadata = kernel_metadata
        self.recurrent_kernel_metadata = recurrent_kernel_metadata
        self.bias_metadata = bias_metadata

    def from_inputs(self, out_features: int, *, use_bias: bool) -> Linear:
        cell = self.cell
        return self._linear(
            cell.in_features, out_features, use_bias, cell.kernel_init, self.kernel_metadata
        )

    def from_hidden(self, out_features: int, *, use_bias: bool) -> Linear:
        cell = self.cell
        return self._linear(
            cell.hidden_features,
            out_features,
            use_bias,
            cell.recurrent_kernel_init,
            self.recurrent_kernel_metadata,
        )

    def _linear(
        self,
        in_features: int,
        out_features: int,
        use_bias: bool,
        kernel_init: Any,
        kernel_metadata: Mapping[str, Any],
    ) -> Linear:
        cell = self.cell
        # An unbiased projection is not handed bias_init, so it keeps Linear's default
        # (the attribute is part of the layer's static structure).
        bias_args = (
            {"bias_init": cell.bias_init, "bias_metadata": self.bias_metadata} if use_bias else {}
        )
        return Linear(
            in_features,
            out_features,
            use_bias=use_bias,
            kernel_init=kernel_init,
            dtype=cell.dtype,
            param_dtype=cell.param_dtype,
            promote_dtype=cell.promote_dtype,
            rngs=self.rngs,
            kernel_metadata=kernel_metadata,
            **bias_args,
        )


class _GatedCell(RNNCellBase):
    """The constructor of the gated cells (LSTM, fused LSTM, GRU).

    They take the same arguments, so one signature serves all of them; each subclass only
    lays out its projections in ``_build_projections``, which also names its parameters.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        gate_fn: Callable[..., Any] = sigmoid,
        activation_fn: Callable[..., Any] = tanh,
        kernel_init: Any = default_kernel_init,
        recurrent_kernel_init: Any = _ORTHOGONAL,
        bias_init: Any = _ZEROS_INIT,
        dtype: Any = None,
        param_dtype: Any = jnp.float32,
        carry_init: Any = None,
        promote_dtype: Any = dtypes.promote_dtype,
        keep_rngs: bool = False,
        rngs: Rngs,
        kernel_metadata: Mapping[str, Any] = _EMPTY,
        recurrent_kernel_metadata: Mapping[str, Any] = _EMPTY,
        bias_metadata: Mapping[str, Any] = _EMPTY,
    ):
        _configure_cell(self, locals(), _GATED_CELL_ARGUMENTS)
        self._build_projections(
            _Projections(self, rngs, kernel_metadata, recurrent_kernel_metadata, bias_metadata)
        )

    def _build_projections(self, projections: _Projections) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define _build_projections")

    def _build_fused_projections(
        self, projections: _Projections, *, num_gates: int, bias_on_inputs: bool
    ) -> None:
        # One input and one hidden matmul compute every gate at once (``dense_i`` and
        # ``dense_h``); only one side has a bias, the side differing between cells.
        fused = num_gates * self.hidden_features
        self.dense_i = projections.from_inputs(fused, use_bias=bias_on_inputs)
        self.dense_h = projections.from_hidden(fused, use_bias=not bias_on_inputs)


class LSTMCell(_GatedCell):
    r"""LSTM cell with separate input (``ii, if_, ig, io``) and hidden (``hi, hf, hg, ho``)
    projections; only the hidden projections carry a bias.

    ``i = σ(W_ii x + W_hi h + b_hi)``, ``f``, ``g = tanh(...)``, ``o`` likewise;
    ``c' = f c + i g``, ``h' = o tanh(c')``. The carry is ``(c, h)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> cell = nnx.LSTMCell(3, 4, rngs=nnx.Rngs(0))
      >>> carry = cell.initialize_carry((2, 3))
      >>> (c, h), y = cell(carry, jnp.ones((2, 3)))
      >>> y.shape
      (2, 4)
    """

    # The gated cells' arguments, except that the recurrent kernels default to the
    # half-precision-safe orthogonal initializer, as Flax's LSTMCell does.
    __init__ = functools.partialmethod(
        _GatedCell.__init__, recurrent_kernel_init=modified_orthogonal
    )

    def _build_projections(self, projections: _Projections) -> None:
        # One Linear per gate (all input ones first), so each gate has its own parameters.
        size = self.hidden_features
        inputs = [projections.from_inputs(size, use_bias=False) for _ in range(4)]
        hidden = [projections.from_hidden(size, use_bias=True) for _ in range(4)]
        self.ii, self.if_, self.ig, self.io = inputs
        self.hi, self.hf, self.hg, self.ho = hidden

    def __call__(
        self, carry: tuple[Array, Array], inputs: Array
    ) -> tuple[tuple[Array, Array], Array]:
        """One LSTM step."""
        self._check_inputs(inputs)
        c, h = carry
        i = self.gate_fn(self.ii(inputs) + self.hi(h))
        f = self.gate_fn(self.if_(inputs) + self.hf(h))
        g = self.activation_fn(self.ig(inputs) + self.hg(h))
        o = self.gate_fn(self.io(inputs) + self.ho(h))
        new_c = f * c + i * g
        new_h = o * self.activation_fn(new_c)
        return (new_c, new_h), new_h

    def initialize_carry(
        self,
        input_shape: tuple[int, ...],
        rngs: Rngs | RngStream | None = None,
        carry_init: Any = None,
    ) -> tuple[Array, Array]:
        """Returns ``(c, h)``, each ``(batch..., hidden_features)``."""
        shape = tuple(input_shape[:-1]) + (self.hidden_features,)
        c = self._new_state(shape, rngs, carry_init)
        h = self._new_state(shape, rngs, carry_init)
        return c, h


class OptimizedLSTMCell(_GatedCell):
    """LSTM cell computing all four gates with one input matmul (``dense_i``, no bias)
    and one hidden matmul (``dense_h``, with bias); gate order in the fused
    ``4 * hidden_features`` axis is ``i, f, g, o``. Same math as :class:`LSTMCell`.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> cell = nnx.OptimizedLSTMCell(3, 4, rngs=nnx.Rngs(0))
      >>> cell.dense_i.kernel.shape, cell.dense_h.kernel.shape
      ((3, 16), (4, 16))
    """

    def _build_projections(self, projections: _Projections) -> None:
        self._build_fused_projections(projections, num_gates=4, bias_on_inputs=False)

    def __call__(
        self, carry: tuple[Array, Array], inputs: Array
    ) -> tuple[tuple[Array, Array], Array]:
        """One LSTM step with fused gate projections."""
        self._check_inputs(inputs)
        c, h = carry
        i, f, g, o = jnp.split(self.dense_i(inputs) + self.dense_h(h), 4, axis=-1)
        new_c = self.gate_fn(f) * c + self.gate_fn(i) * self.activation_fn(g)
        new_h = self.gate_fn(o) * self.activation_fn(new_c)
        return (new_c, new_h), new_h

    # The carry is LSTMCell's ``(c, h)``.
    initialize_carry = LSTMCell.initialize_carry


class SimpleCell(RNNCellBase):
    """Elman cell: ``h' = activation(W_i x + b_i + W_h h)`` (plus ``h`` if ``residual``).

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> cell = nnx.SimpleCell(3, 4, rngs=nnx.Rngs(0))
      >>> h, y = cell(cell.initialize_carry((2, 3)), jnp.ones((2, 3)))
      >>> h.shape
      (2, 4)
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        dtype: Any = jnp.float32,
        param_dtype: Any = jnp.float32,
        carry_init: Any = None,
        residual: bool = False,
        activation_fn: Callable[..., Any] = tanh,
        kernel_init: Any = _LECUN_NORMAL,
        recurrent_kernel_init: Any = _ORTHOGONAL,
        bias_init: Any = _ZEROS_INIT,
        promote_dtype: Any = dtypes.promote_dtype,
        keep_rngs: bool = False,
        rngs: Rngs,
        kernel_metadata: Mapping[str, Any] = _EMPTY,
        recurrent_kernel_metadata: Mapping[str, Any] = _EMPTY,
        bias_metadata: Mapping[str, Any] = _EMPTY,
    ):
        _configure_cell(self, locals(), _SIMPLE_CELL_ARGUMENTS)
        projections = _Projections(
            self, rngs, kernel_metadata, recurrent_kernel_metadata, bias_metadata
        )
        # The hidden projection draws its kernel first; swapping them would change the init.
        self.dense_h = projections.from_hidden(hidden_features, use_bias=False)
        self.dense_i = projections.from_inputs(hidden_features, use_bias=True)

    def __call__(self, carry: Array, inputs: Array) -> tuple[Array, Array]:
        """One step."""
        self._check_inputs(inputs)
        new_carry = self.dense_i(inputs) + self.dense_h(carry)
        if self.residual:
            new_carry = new_carry + carry
        new_carry = self.activation_fn(new_carry)
        return new_carry, new_carry


class GRUCell(_GatedCell):
    """GRU cell with fused projections ``dense_i`` (input, bias; ``r, z, n``) and
    ``dense_h`` (hidden, no bias):

    ``r = σ(x_r + h_r)``, ``z = σ(x_z + h_z)``, ``n = tanh(x_n + r * h_n)``,
    ``h' = (1 - z) n + z h``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> cell = nnx.GRUCell(3, 4, rngs=nnx.Rngs(0))
      >>> cell.dense_i.kernel.shape, cell.dense_h.kernel.shape
      ((3, 12), (4, 12))
    """

    def _build_projections(self, projections: _Projections) -> None:
        self._build_fused_projections(projections, num_gates=3, bias_on_inputs=True)

    def __call__(self, carry: Array, inputs: Array) -> tuple[Array, Array]:
        """One GRU step."""
        self._check_inputs(inputs)
        h = carry
        x_r, x_z, x_n = jnp.split(self.dense_i(inputs), 3, axis=-1)
        h_r, h_z, h_n = jnp.split(self.dense_h(h), 3, axis=-1)
        r = self.gate_fn(x_r + h_r)
        z = self.gate_fn(x_z + h_z)
        n = self.activation_fn(x_n + r * h_n)
        new_h = (1.0 - z) * n + z * h
        return new_h, new_h


def flip_sequences(
    inputs: Array, seq_lengths: Array | None, num_batch_dims: int, time_major: bool
) -> Array:
    """Reverses each sequence along time, keeping padding at the end.

    With ``seq_lengths``, only the first ``seq_lengths[b]`` steps of sequence ``b`` are
    reversed; the padding after them stays in place.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[1, 0, 0], [2, 3, 0], [4, 5, 6]])
      >>> flip_sequences(x, jnp.array([1, 2, 3]), 1, False).tolist()
      [[1, 0, 0], [3, 2, 0], [6, 5, 4]]
    """
    time_axis = 0 if time_major else num_batch_dims
    steps = inputs.shape[time_axis]
    if seq_lengths is None:
        return jnp.flip(inputs, axis=time_axis)
    lengths = jnp.expand_dims(seq_lengths, axis=time_axis)  # time axis of size 1
    reversed_steps = jnp.arange(steps - 1, -1, -1)
    if time_major:
        reversed_steps = reversed_steps.reshape((steps,) + (1,) * num_batch_dims)
    else:
        reversed_steps = reversed_steps.reshape((1,) * num_batch_dims + (steps,))
    # Step t of the flipped sequence reads step (length - 1 - t) mod steps; for t beyond
    # the length this lands on the padding, which therefore stays at the end.
    source = (reversed_steps + lengths) % steps
    source = source.reshape(source.shape + (1,) * (inputs.ndim - source.ndim))
    return jnp.take_along_axis(inputs, source, axis=time_axis)


class RNNBase(Protocol):
    """The call signature shared by :class:`RNN` and :class:`Bidirectional`."""

    def __call__(
        self,
        inputs: Array,
        *,
        initial_carry: Carry | None = None,
        rngs: Rngs | RngStream | None = None,
        seq_lengths: Array | None = None,
        return_carry: bool | None = None,
        time_major: bool | None = None,
        reverse: bool | None = None,
        keep_order: bool | None = None,
    ) -> Output | tuple[Carry, Output]: ...


def _select_last_carry(carries: Any, seq_lengths: Array) -> Any:
    last = seq_lengths - 1
    return jax.tree.map(lambda x: x[last, jnp.arange(x.shape[1])], carries)


class RNN(Module):
    """Runs a recurrent cell over the time axis of its inputs.

    Inputs are ``(batch..., time, features...)`` (``time_major=False``) or ``(time,
    batch..., features...)``. ``reverse`` processes the sequences backwards (respecting
    ``seq_lengths``); ``keep_order`` then flips the outputs back. ``return_carry``
    returns ``(final_carry, outputs)``; with ``seq_lengths`` the final carry of each
    sequence is the one at its last valid step.

    The cell's Variables are carried through the scan (``state_axes`` default
    ``{...: nnx.Carry}``); a ``state_axes`` entry mapping a filter to ``None`` broadcasts
    that state instead (read-only inside the scan).

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> rnn = nnx.RNN(nnx.GRUCell(3, 4, rngs=nnx.Rngs(0)))
      >>> rnn(jnp.ones((2, 5, 3))).shape
      (2, 5, 4)
    """

    def __init__(
        self,
        cell: RNNCellBase,
        *,
        time_major: bool = False,
        return_carry: bool = False,
        reverse: bool = False,
        keep_order: bool = False,
        unroll: int = 1,
        state_axes: Mapping[Any, Any] | None = None,
        broadcast_rngs: Any = None,
        rngs: Rngs | RngStream | bool = True,
    ):
        self.cell = cell
        self.time_major = time_major
        self.return_carry = return_carry
        self.reverse = reverse
        self.keep_order = keep_order
        self.unroll = unroll
        self.state_axes = dict(state_axes) if state_axes is not None else None
        self.broadcast_rngs = broadcast_rngs
        if rngs is True:
            rngs = Rngs(0)
        elif rngs is False:
            rngs = None
        self.rngs = rngs

    def _state_plan(self) -> tuple[list[Any], list[bool]]:
        """(filters, carried?) for splitting the cell's state around the scan.

        No filters means one group holding all state, carried.
        """
        if self.state_axes is None:
            return [], [True]
        from plait.core import Carry as CarryAxis

        items = list(self.state_axes.items())
        for flt, axis in items:
            if axis is not None and axis is not CarryAxis:
                raise ValueError(
                    f"RNN: state_axes entry {flt!r}: {axis!r} is not supported; each entry "
                    "maps a filter to nnx.Carry (carried through the steps) or None "
                    "(broadcast, read-only). Scanning state along an axis needs nnx.scan."
                )
        return [flt for flt, _ in items], [axis is CarryAxis for _, axis in items]

    def __call__(
        self,
        inputs: Array,
        *,
        initial_carry: Carry | None = None,
        seq_lengths: Array | None = None,
        return_carry: bool | None = None,
        time_major: bool | None = None,
        reverse: bool | None = None,
        keep_order: bool | None = None,
        rngs: Rngs | RngStream | None = None,
    ) -> Output | tuple[Carry, Output]:
        """Scans the cell over time; see the class docstring for the flags."""
        return_carry = self.return_carry if return_carry is None else return_carry
        time_major = self.time_major if time_major is None else time_major
        reverse = self.reverse if reverse is None else reverse
        keep_order = self.keep_order if keep_order is None else keep_order
        n_features = self.cell.num_feature_axes
        if inputs.ndim < n_features + 1:
            raise shape_error(
                self,
                argument="inputs",
                expected="(batch..., time, features)",
                actual=inputs.shape,
                fix="add a time axis (and batch axes, if any).",
            )
        time_axis = 0 if time_major else inputs.ndim - (n_features + 1)
        batch_dims = inputs.shape[1:-n_features] if time_major else inputs.shape[:time_axis]
        if reverse:
            inputs = flip_sequences(inputs, seq_lengths, len(batch_dims), time_major)
        if rngs is None:
            rngs = self.rngs
        step_shape = inputs.shape[:time_axis] + inputs.shape[time_axis + 1 :]
        carry = (
            self.cell.initialize_carry(step_shape, rngs) if initial_carry is None else initial_carry
        )
        slice_carry = seq_lengths is not None and return_carry

        filters, is_carried = self._state_plan()
        graphdef, *states = split(self.cell, *filters)
        carried = [s for s, c in zip(states, is_carried, strict=True) if c]
        broadcast = [s for s, c in zip(states, is_carried, strict=True) if not c]

        def assemble(carried: list[Any]) -> list[Any]:
            carried_iter, broadcast_iter = iter(carried), iter(broadcast)
            return [next(carried_iter) if c else next(broadcast_iter) for c in is_carried]

        def step(scan_carry: Any, x: Array) -> tuple[Any, Any]:
            carried, carry = scan_carry
            cell = merge(graphdef, *assemble(carried))
            carry, y = cell(carry, x)
            _, *new_states = split(cell, *filters)
            carried = [s for s, c in zip(new_states, is_carried, strict=True) if c]
            return (carried, carry), ((carry, y) if slice_carry else y)

        xs = jnp.moveaxis(inputs, time_axis, 0)
        (carried, carry), ys = jax.lax.scan(step, (carried, carry), xs, unroll=self.unroll)
        update(self.cell, *carried)

        if slice_carry:
            carries, ys = ys
            assert seq_lengths is not None
            carry = _select_last_carry(carries, seq_lengths)
        outputs = jax.tree.map(lambda y: jnp.moveaxis(y, 0, time_axis), ys)
        if reverse and keep_order:
            outputs = flip_sequences(outputs, seq_lengths, len(batch_dims), time_major)
        return (carry, outputs) if return_carry else outputs


def _concatenate(a: Array, b: Array) -> Array:
    return jnp.concatenate([a, b], axis=-1)


class Bidirectional(Module):
    """Runs a forward and a backward RNN over the inputs and merges their outputs.

    The backward RNN runs with ``reverse=True, keep_order=True`` so both outputs are in
    input order; ``merge_fn`` (default: concatenate on the last axis) combines them.

    Examples:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> fwd = nnx.RNN(nnx.GRUCell(3, 4, rngs=nnx.Rngs(0)))
      >>> bwd = nnx.RNN(nnx.GRUCell(3, 4, rngs=nnx.Rngs(1)))
      >>> nnx.Bidirectional(fwd, bwd)(jnp.ones((2, 5, 3))).shape
      (2, 5, 8)
    """

    merge_fn: Callable[[Array, Array], Array] = _concatenate
    time_major: bool = False
    return_carry: bool = False

    def __init__(
        self,
        forward_rnn: RNNBase,
        backward_rnn: RNNBase,
        *,
        merge_fn: Callable[[Array, Array], Array] = _concatenate,
        time_major: bool = False,
        return_carry: bool = False,
        rngs: Rngs | RngStream | bool = True,
    ):
        self.forward_rnn = forward_rnn
        self.backward_rnn = backward_rnn
        self.merge_fn = merge_fn
        self.time_major = time_major
        self.return_carry = return_carry
        if rngs is True:
            rngs = Rngs(0)
        elif rngs is False:
            rngs = None
        self.rngs = rngs

    def __call__(
        self,
        inputs: Array,
        *,
        initial_carry: tuple[Carry, Carry] | None = None,
        rngs: Rngs | RngStream | None = None,
        seq_lengths: Array | None = None,
        return_carry: bool | None = None,
        time_major: bool | None = None,
        reverse: bool | None = None,
        keep_order: bool | None = None,
    ) -> Output | tuple[tuple[Carry, Carry], Output]:
        """Encodes forwards and backwards and merges (``reverse``/``keep_order`` unused)."""
        del reverse, keep_order
        time_major = self.time_major if time_major is None else time_major
        return_carry = self.return_carry if return_carry is None else return_carry
        if rngs is None:
            rngs = self.rngs
        forward_init, backward_init = initial_carry if initial_carry is not None else (None, None)
        if self.forward_rnn is self.backward_rnn:
            _log.warning(
                "Bidirectional: forward_rnn and backward_rnn are the same object, so the two "
                "directions share parameters."
            )
        forward_carry, forward_out = self.forward_rnn(
            inputs,
            initial_carry=forward_init,
            rngs=rngs,
            seq_lengths=seq_lengths,
            return_carry=True,
            time_major=time_major,
            reverse=False,
        )
        backward_carry, backward_out = self.backward_rnn(
            inputs,
            initial_carry=backward_init,
            rngs=rngs,
            seq_lengths=seq_lengths,
            return_carry=True,
            time_major=time_major,
            reverse=True,
            keep_order=True,
        )
        outputs = jax.tree.map(self.merge_fn, forward_out, backward_out)
        if return_carry:
            return (forward_carry, backward_carry), outputs
        return outputs

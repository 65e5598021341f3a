"""RNN (a cell scanned over time) and Bidirectional (two RNNs, opposite directions)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import jax
import jax.numpy as jnp
from plait.core.frozen_dict import FrozenDict

from ._base import Module, scan
from ._cells import RNNCellBase
from ._common import describe
from ._errors import LayerShapeError

Array = Any
Carry = Any
Output = Any


def flip_sequences(
    inputs: Array, seq_lengths: Array | None, num_batch_dims: int, time_major: bool
) -> Array:
    """Reverses each sequence along the time axis, keeping padding at the end.

    With ``seq_lengths`` only the first ``seq_lengths[b]`` steps of sequence ``b``
    are reversed; the padding after them stays where it is.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[1, 0, 0], [2, 3, 0], [4, 5, 6]])
      >>> flip_sequences(x, jnp.array([1, 2, 3]), num_batch_dims=1, time_major=False).tolist()
      [[1, 0, 0], [3, 2, 0], [6, 5, 4]]
    """
    time_axis = 0 if time_major else num_batch_dims
    steps = inputs.shape[time_axis]
    if seq_lengths is None:
        return jnp.flip(inputs, axis=time_axis)
    lengths = jnp.expand_dims(seq_lengths, axis=time_axis)
    # Position t of a length-L sequence reads step (L - 1 - t) mod steps.
    reversed_steps = jnp.arange(steps - 1, -1, -1)
    if time_major:
        reversed_steps = reversed_steps.reshape((steps,) + (1,) * num_batch_dims)
    else:
        reversed_steps = reversed_steps.reshape((1,) * num_batch_dims + (steps,))
    index = (reversed_steps + lengths) % steps
    index = index.reshape(index.shape + (1,) * (inputs.ndim - index.ndim))
    return jnp.take_along_axis(inputs, index, axis=time_axis)


def _select_last_carry(carries: Carry, seq_lengths: Array) -> Carry:
    """From time-major carry histories, the carry after each sequence's last step."""
    last = seq_lengths - 1

    def pick(history: Array) -> Array:
        return history[last, jnp.arange(history.shape[1])]

    return jax.tree.map(pick, carries)


def _concatenate(a: Array, b: Array) -> Array:
    return jnp.concatenate([a, b], axis=-1)


class RNN(Module):
    """Applies an :class:`RNNCellBase` cell over the time axis with ``nn.scan``.

    Inputs are ``(*batch, time, *features)`` (or ``(time, *batch, *features)`` with
    ``time_major``); the output stacks the cell's outputs along the same time axis.
    The cell's parameters are shared across time steps (broadcast by the scan).

    Attributes:
      cell: the cell to scan.
      time_major: the time axis comes first.
      return_carry: also return the final carry.
      reverse: process the sequence from the end (outputs come back reversed
        unless ``keep_order``); with ``seq_lengths`` the padding stays at the end.
      keep_order: with ``reverse``, flip the outputs back to input order.
      unroll: scan iterations unrolled per loop step.
      variable_axes: collections scanned along an axis (passed to ``nn.scan``).
      variable_broadcast: collections shared by every step (``'params'``).
      variable_carry: collections carried from step to step.
      split_rngs: rng streams split per step (``{'params': False}``).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> rnn = nn.RNN(nn.GRUCell(features=4))
      >>> x = jnp.ones((2, 5, 3))   # (batch, time, features)
      >>> variables = rnn.init(jax.random.key(0), x)
      >>> rnn.apply(variables, x).shape
      (2, 5, 4)
    """

    cell: RNNCellBase
    time_major: bool = False
    return_carry: bool = False
    reverse: bool = False
    keep_order: bool = False
    unroll: int = 1
    variable_axes: Mapping[Any, Any] = FrozenDict()
    variable_broadcast: Any = "params"
    variable_carry: Any = False
    split_rngs: Mapping[Any, bool] = FrozenDict({"params": False})

    def __call__(
        self,
        inputs: jax.Array,
        *,
        initial_carry: Carry | None = None,
        init_key: jax.Array | None = None,
        seq_lengths: Array | None = None,
        return_carry: bool | None = None,
        time_major: bool | None = None,
        reverse: bool | None = None,
        keep_order: bool | None = None,
    ) -> Output | tuple[Carry, Output]:
        """Runs the cell over the sequence.

        Args:
          inputs: the input sequence.
          initial_carry: the starting carry (default: ``cell.initialize_carry``).
          init_key: key for ``initialize_carry`` (default: ``jax.random.key(0)``).
          seq_lengths: ``(*batch)`` integer lengths; with ``return_carry`` the carry
            returned is the one after each sequence's last valid step (the outputs
            at padding positions are not zeroed).
          return_carry: overrides the attribute.
          time_major: overrides the attribute.
          reverse: overrides the attribute.
          keep_order: overrides the attribute.

        Returns:
          The outputs, or ``(carry, outputs)`` with ``return_carry``.
        """
        return_carry = self.return_carry if return_carry is None else return_carry
        time_major = self.time_major if time_major is None else time_major
        reverse = self.reverse if reverse is None else reverse
        keep_order = self.keep_order if keep_order is None else keep_order

        n_features = self.cell.num_feature_axes
        if inputs.ndim < n_features + 1:
            raise LayerShapeError(
                f"{describe(self)}: inputs of shape {tuple(inputs.shape)} have no time "
                f"axis: the cell takes {n_features} feature axis(es), so the inputs "
                f"need rank >= {n_features + 1} ((*batch, time, *features), or "
                "(time, *batch, *features) with time_major=True)."
            )
        time_axis = 0 if time_major else inputs.ndim - (n_features + 1)
        if time_major:
            batch_dims = inputs.shape[1:-n_features]
        else:
            batch_dims = inputs.shape[:time_axis]

        if reverse:
            inputs = flip_sequences(inputs, seq_lengths, len(batch_dims), time_major)

        if initial_carry is None:
            key = jax.random.key(0) if init_key is None else init_key
            step_shape = inputs.shape[:time_axis] + inputs.shape[time_axis + 1 :]
            carry = self.cell.initialize_carry(key, step_shape)
        else:
            carry = initial_carry

        # With seq_lengths, keep every step's carry to pick each sequence's last one.
        keep_carries = seq_lengths is not None and return_carry

        def step(cell: RNNCellBase, carry: Carry, x: Array):
            carry, y = cell(carry, x)
            return (carry, (carry, y)) if keep_carries else (carry, y)

        scanned = scan(
            step,
            in_axes=time_axis,
            out_axes=(0, time_axis) if keep_carries else time_axis,
            unroll=self.unroll,
            variable_axes=self.variable_axes,
            variable_broadcast=self.variable_broadcast,
            variable_carry=self.variable_carry,
            split_rngs=self.split_rngs,
        )
        carry, outputs = scanned(self.cell, carry, inputs)
        if keep_carries:
            carries, outputs = outputs
            carry = _select_last_carry(carries, seq_lengths)

        if reverse and keep_order:
            outputs = flip_sequences(outputs, seq_lengths, len(batch_dims), time_major)
        return (carry, outputs) if return_carry else outputs


class RNNBase(Protocol):
    """What :class:`Bidirectional` needs from its two halves (``RNN`` provides it)."""

    def __call__(
        self,
        inputs: jax.Array,
        *,
        initial_carry: Carry | None = None,
        init_key: jax.Array | None = None,
        seq_lengths: Array | None = None,
        return_carry: bool | None = None,
        time_major: bool | None = None,
        reverse: bool | None = None,
        keep_order: bool | None = None,
    ) -> Output | tuple[Carry, Output]: ...


class Bidirectional(Module):
    """Runs one RNN forward and one backward over the sequence and merges outputs.

    The backward RNN is called with ``reverse=True, keep_order=True`` so both
    outputs are aligned in time; ``merge_fn`` (default: concatenation on the last
    axis) combines them. The carry is ``(forward_carry, backward_carry)``.

    Attributes:
      forward_rnn: the left-to-right RNN.
      backward_rnn: the right-to-left RNN.
      merge_fn: combines the two outputs.
      time_major: the time axis comes first.
      return_carry: also return the carries.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from plait import linen as nn
      >>> layer = nn.Bidirectional(nn.RNN(nn.GRUCell(4)), nn.RNN(nn.GRUCell(4)))
      >>> x = jnp.ones((2, 5, 3))
      >>> layer.apply(layer.init(jax.random.key(0), x), x).shape
      (2, 5, 8)
    """

    forward_rnn: RNNBase
    backward_rnn: RNNBase
    merge_fn: Callable[[Array, Array], Array] = _concatenate
    time_major: bool = False
    return_carry: bool = False

    def __call__(
        self,
        inputs: jax.Array,
        *,
        initial_carry: Carry | None = None,
        init_key: jax.Array | None = None,
        seq_lengths: Array | None = None,
        return_carry: bool | None = None,
        time_major: bool | None = None,
        reverse: bool | None = None,
        keep_order: bool | None = None,
    ) -> Output | tuple[Carry, Output]:
        """Runs both directions. ``reverse`` and ``keep_order`` are accepted for
        signature compatibility with :class:`RNN` and ignored."""
        time_major = self.time_major if time_major is None else time_major
        return_carry = self.return_carry if return_carry is None else return_carry
        if init_key is not None:
            key_forward, key_backward = jax.random.split(init_key)
        else:
            key_forward = key_backward = None
        if initial_carry is not None:
            carry_forward, carry_backward = initial_carry
        else:
            carry_forward = carry_backward = None

        carry_forward, out_forward = self.forward_rnn(
            inputs,
            initial_carry=carry_forward,
            init_key=key_forward,
            seq_lengths=seq_lengths,
            return_carry=True,
            time_major=time_major,
            reverse=False,
        )
        carry_backward, out_backward = self.backward_rnn(
            inputs,
            initial_carry=carry_backward,
            init_key=key_backward,
            seq_lengths=seq_lengths,
            return_carry=True,
            time_major=time_major,
            reverse=True,
            keep_order=True,
        )
        outputs = jax.tree.map(self.merge_fn, out_forward, out_backward)
        carry = (carry_forward, carry_backward)
        return (carry, outputs) if return_carry else outputs

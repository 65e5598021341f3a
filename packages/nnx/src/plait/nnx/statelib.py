"""States (``nnx.statelib``): nested mappings of Variables and their flat forms."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from plait.core import FlatState as FlatState
from plait.core import State as State
from plait.core import filter_state as filter_state
from plait.core import from_flat_state as from_flat_state
from plait.core import map_state as map_state
from plait.core import merge_state as merge_state
from plait.core import replace_by_pure_dict as replace_by_pure_dict
from plait.core import restore_int_paths as restore_int_paths
from plait.core import split_state as split_state
from plait.core import to_flat_state as to_flat_state
from plait.core import to_pure_dict as to_pure_dict

ExtractValueFn = Callable[[Any], Any]
SetValueFn = Callable[[Any, Any], Any]


def diff(state: State, other: State) -> State:
    """The entries of ``state`` whose path is not in ``other``.

    Example:
      >>> diff(State({"a": 1, "b": 2}), State({"a": 1}))
      State({
        'b': 2,
      })
    """
    if not other:
        return state
    theirs = set(to_flat_state(other).paths)
    return from_flat_state([(p, v) for p, v in to_flat_state(state) if p not in theirs])

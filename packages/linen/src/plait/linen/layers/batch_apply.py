"""BatchApply and its helpers (``flax.linen.batch_apply``)."""

from __future__ import annotations

from ._batch_apply import BatchApply as BatchApply
from ._batch_apply import arbitrary_mergeable_leaf as arbitrary_mergeable_leaf
from ._batch_apply import merge_leading_dims as merge_leading_dims
from ._batch_apply import ndim_at_least as ndim_at_least
from ._batch_apply import split_leading_dim as split_leading_dim

__all__ = [
    "arbitrary_mergeable_leaf",
    "BatchApply",
    "merge_leading_dims",
    "ndim_at_least",
    "split_leading_dim",
]

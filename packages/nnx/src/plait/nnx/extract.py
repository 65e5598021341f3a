"""Pytree <-> graph conversion for custom transforms (``nnx.extract``)."""

from ._extract import Missing as Missing
from ._extract import NodeStates as NodeStates
from ._extract import default_split_fn as default_split_fn
from ._extract import from_tree as from_tree
from ._extract import is_tree_node as is_tree_node
from ._extract import merge_tree_node as merge_tree_node
from ._extract import prefix as prefix
from ._extract import to_tree as to_tree

"""The examples in the public docstrings run (doctest)."""

import doctest
import importlib

import pytest

MODULES = [
    "plait.linen._apply",
    "plait.linen._collections",
    "plait.linen._combinators",
    "plait.linen._context",
    "plait.linen._filters",
    "plait.linen._meta",
    "plait.linen._module",
    "plait.linen._name_scope",
    "plait.linen._partitioning",
    "plait.linen._scope",
    "plait.linen._spmd",
    "plait.linen._summary",
    "plait.linen._transforms",
    "plait.linen.kw_only_dataclasses",
    "plait.linen.training.common_utils",
    "plait.linen.training.dynamic_scale",
    "plait.linen.training.early_stopping",
    "plait.linen.training.train_state",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest example(s) failed in {name}"

"""The examples in the public docstrings run (doctest)."""

import doctest
import importlib

import pytest

MODULES = [
    "plait.bridge._context",
    "plait.bridge._functional",
    "plait.bridge._interop",
    "plait.bridge._module",
    "plait.bridge._to_linen",
    "plait.bridge._to_nnx",
    "plait.bridge._variables",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no docstring examples"
    assert result.failed == 0, f"{result.failed} doctest example(s) failed in {name}"

"""The examples in the public docstrings run (so the documentation cannot drift)."""

import doctest
import importlib

import pytest

MODULES = ["_convert", "_flax", "_manager", "_msgpack", "_restore", "_rules", "_save"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"plait.checkpoint.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0

"""The docstring examples of the public API run as written."""

import doctest
import importlib

import pytest

MODULES = [
    "_attention", "_config", "_layers", "_model", "_pipeline", "_sample", "_sharding", "_steps", "_tokenizer", "_weights",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"plait.examples.gemma.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, f"{name}: {result}"

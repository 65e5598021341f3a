"""The examples in plait.nnx's docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import plait.nnx
import pytest

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(plait.nnx.__path__, prefix="plait.nnx.")
    if not info.name.startswith("plait.nnx.nn")  # the layers package tests its own examples
    and info.name != "plait.nnx.bridge"  # an alias of plait.bridge, another distribution
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    for test in finder.find(module, name, extraglobs={"nnx": plait.nnx}):
        if test.examples:
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"

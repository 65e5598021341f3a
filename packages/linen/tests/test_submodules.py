"""Every module Flax's linen.txt lists is importable by its module path, as in Flax."""

import importlib
import pathlib

import pytest
from plait import linen as nn

API = pathlib.Path(__file__).resolve().parents[4] / "shared" / "api" / "linen.txt"
MODULES = ["activation", "attention", "batch_apply", "combinators", "dtypes", "fp8_ops",
           "initializers", "kw_only_dataclasses", "linear", "meta", "module", "normalization",
           "partitioning", "pooling", "recurrent", "spmd", "stochastic", "summary", "transforms"]


def test_the_list_matches_the_api_inventory():
    if not API.exists():
        pytest.skip("the API inventory is not next to this checkout")
    listed = {line.split(" | ")[0] for line in API.read_text().splitlines()
              if " | module | " in line and not line.startswith(" ")}
    assert listed == set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_module_path_imports_and_is_the_attribute(name):
    module = importlib.import_module(f"plait.linen.{name}")
    assert getattr(nn, name) is module


def test_from_import_of_layer_files():
    from plait.linen.initializers import lecun_normal, zeros_init
    from plait.linen.linear import Dense, default_kernel_init
    from plait.linen.normalization import LayerNorm

    assert Dense is nn.Dense and LayerNorm is nn.LayerNorm
    assert lecun_normal is nn.initializers.lecun_normal and zeros_init is nn.zeros_init
    assert default_kernel_init is nn.linear.default_kernel_init

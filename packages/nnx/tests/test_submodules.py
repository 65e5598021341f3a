"""Module paths that Flax's nnx.txt defines under flax.nnx import here under plait.nnx."""

import importlib
import importlib.util
import pathlib

import pytest
from plait import nnx

API = pathlib.Path(__file__).resolve().parents[4] / "shared" / "api" / "nnx.txt"
# Names whose defining module is flax.nnx.<name> (the others in the inventory, such as
# nnx.object -> pytreelib or nnx.metrics -> training.metrics, are attributes in Flax too).
PATHS = ["compat", "deprecations", "extract", "filterlib", "graph", "graphlib", "helpers",
         "module", "nn", "proxy_caller", "pytreelib", "reprlib", "rnglib", "spmd", "statelib",
         "summary", "tracers", "training", "transforms", "traversals", "variablelib",
         "visualization"]


def test_the_list_matches_the_api_inventory():
    if not API.exists():
        pytest.skip("the API inventory is not next to this checkout")
    top = [line.split(" | ") for line in API.read_text().splitlines()
           if " | module | " in line and not line.startswith(" ")]
    listed = {name for name, _, where in top if where.strip() == f"flax.nnx.{name}"}
    assert listed == set(PATHS) | {"bridge"}


@pytest.mark.parametrize("name", PATHS)
def test_module_path_imports(name):
    module = importlib.import_module(f"plait.nnx.{name}")
    assert getattr(nnx, name) is module


def test_bridge_module_path_is_plait_bridge_or_a_clear_error():
    if importlib.util.find_spec("plait.bridge") is None:
        with pytest.raises(ImportError, match=r"plait-bridge, which is not installed"):
            importlib.import_module("plait.nnx.bridge")
    else:
        import plait.bridge

        assert importlib.import_module("plait.nnx.bridge") is plait.bridge

"""Functional / functional, and the public names of Flax's ``flax.nnx.bridge``."""

import jax.numpy as jnp
import numpy as np
import pytest
from plait import bridge, nnx

# Flax 0.12's public names, per submodule.
_FLAX_NAMES = {
    "": [
        "AttrPriority",
        "Functional",
        "Module",
        "NNXMeta",
        "Scope",
        "ToLinen",
        "ToNNX",
        "compact",
        "current_context",
        "current_module",
        "functional",
        "interop",
        "lazy_init",
        "linen_in_bridge_mdl",
        "module",
        "nnx_in_bridge_mdl",
        "to_linen",
        "variables",
        "with_partitioning",
        "initializers",
        "wrappers",
    ],
    "wrappers": [
        "Functional",
        "ToLinen",
        "ToNNX",
        "current_linen_module",
        "functional",
        "lazy_init",
        "linen_rngs_dict",
        "to_linen",
        "to_linen_class",
    ],
    "module": [
        "MODULE_CONTEXT",
        "ModuleBase",
        "ModuleContext",
        "ModuleMeta",
        "ModuleStackEntry",
        "ModuleState",
        "has_setup",
        "AttrPriority",
        "Module",
        "Scope",
        "compact",
        "current_context",
        "current_module",
    ],
    "variables": [
        "get_col_name",
        "is_vanilla_variable",
        "linen_vars_to_nnx_attrs",
        "nnx_attrs_to_linen_vars",
        "sort_variable_types",
        "to_linen_var",
        "to_nnx_var",
        "NNXMeta",
        "with_partitioning",
    ],
    "interop": ["linen_in_bridge_mdl", "nnx_in_bridge_mdl"],
}


@pytest.mark.parametrize("submodule", sorted(_FLAX_NAMES))
def test_every_flax_bridge_name_exists(submodule):
    namespace = getattr(bridge, submodule) if submodule else bridge
    missing = [name for name in _FLAX_NAMES[submodule] if not hasattr(namespace, name)]
    assert missing == []


def test_attr_priority_values_match_flax():
    assert [(p.name, int(p)) for p in bridge.AttrPriority] == [
        ("HIGH", 0),
        ("INIT_PARENT", 20),
        ("DEFAULT", 50),
        ("LOW", 100),
    ]


def test_functional_init_and_apply():
    f = bridge.functional(nnx.Linear)(3, 2)
    state = f.init(rngs=nnx.Rngs(0))
    x = jnp.ones((4, 3))
    y, (graphdef, new_state) = f.apply(state)(x)
    expected = x @ state["kernel"][...] + state["bias"][...][None]
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    assert graphdef == f.graphdef


def test_functional_apply_before_init_explains_the_fix():
    with pytest.raises(
        bridge.BridgeError, match=r"(?s)init\(\) has not been called.*Fix: call `state = f\.init"
    ):
        bridge.functional(nnx.Linear)(3, 2).apply({})

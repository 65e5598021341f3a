"""``display``: print objects readably (Modules as a nested tree of shapes)."""

from __future__ import annotations

import sys


def _in_ipython() -> bool:
    shell = sys.modules.get("IPython")
    return bool(shell and getattr(shell, "get_ipython", lambda: None)())


in_ipython = _in_ipython()


def display(*args) -> None:
    """Prints each argument: Modules and other Objects as nested trees with shapes.

    Flax renders with treescope when it is installed and running in a notebook; plait
    prints the plain-text repr (Variables as ``Param(float32[2,3])``) everywhere.

    Example:
      >>> import jax.numpy as jnp
      >>> from plait import nnx
      >>> class Foo(nnx.Module):
      ...   def __init__(self):
      ...     self.w = nnx.Param(jnp.ones((2, 3)))
      >>> nnx.display(Foo())
      Foo(  # Param: 6 (24 B)
        w=Param(float32[2,3]),
      )
    """
    for arg in args:
        print(repr(arg))

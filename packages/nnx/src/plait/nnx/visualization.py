"""Display (``nnx.visualization``)."""

from ._visualization import display as display
from ._visualization import in_ipython as in_ipython

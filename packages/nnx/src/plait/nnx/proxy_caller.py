"""Method-call proxies (``nnx.proxy_caller``): ``graphdef.apply(state).method(...)``."""

from plait.core import ApplyCaller as ApplyCaller

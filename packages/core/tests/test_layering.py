"""plait.core imports only the standard library, jax/numpy/msgpack and itself (relatively).

The same rule as ``ci/run.py check``, restated here so that the core's own test suite
(which a vendoring framework may run alone) enforces it; nothing is imported from ``ci/``.
"""

import ast
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parent.parent / "src" / "plait" / "core"
ALLOWED_THIRD_PARTY = {"jax", "jaxlib", "numpy", "msgpack", "typing_extensions"}
# Standard-library modules that could smuggle code execution into deserialization.
BANNED = {"pickle", "marshal", "shelve", "dill", "cloudpickle"}
SOURCES = sorted(CORE.rglob("*.py"))


def _imports(path: Path):
    """Yields (line, absolute module name or None, relative level) for every import."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, 0
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, node.module, node.level


def test_sources_found():
    names = {p.name for p in SOURCES}
    assert {"__init__.py", "serialization.py", "struct.py", "_sharding.py"} <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(CORE)))
def test_only_allowed_imports(path):
    stdlib = set(sys.stdlib_module_names)
    # A relative import may climb to plait.core but never above it.
    depth = len(path.relative_to(CORE).parts) - 1
    problems = []
    for line, module, level in _imports(path):
        if level:
            if level - 1 > depth:
                problems.append(f"line {line}: relative import climbs out of plait.core")
            continue
        top = module.split(".")[0]
        if top in BANNED:
            problems.append(f"line {line}: imports {module!r}; the core never pickles")
        elif top not in stdlib and top not in ALLOWED_THIRD_PARTY:
            problems.append(
                f"line {line}: imports {module!r}; plait.core may import only the standard "
                f"library, {sorted(ALLOWED_THIRD_PARTY)} and itself through relative imports"
            )
    assert not problems, f"{path.relative_to(CORE)}:\n" + "\n".join(problems)


def test_the_checker_catches_violations(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import plait.nnx\nfrom flax import struct\nimport pickle\nfrom . import ok\n")
    found = [(m, level) for _, m, level in _imports(bad)]
    assert found == [("plait.nnx", 0), ("flax", 0), ("pickle", 0), (None, 1)]

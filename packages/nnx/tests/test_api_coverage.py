"""Every public name of ``flax.nnx`` (0.12) exists on ``plait.nnx`` with a compatible signature.

The reference list is ``data/nnx.txt`` (Flax's public names and signatures, introspected
from the 0.12.12 wheel); only its top-level section is checked here. A callable is compatible when it has
the same required positional parameters and accepts every keyword Flax accepts.
"""

from __future__ import annotations

import inspect
import types
from pathlib import Path

import plait.nnx as nnx
import pytest

API_FILE = Path(__file__).resolve().parent / "data" / "nnx.txt"

# Names provided by another distribution, by design: the Linen<->NNX bridge needs Linen,
# so it is plait.bridge (distribution plait-bridge, depending on plait-nnx and plait-linen).
# ``nnx.bridge`` / ``nnx.wrappers`` resolve to it when plait-bridge is installed and
# otherwise raise an ImportError that says so (tested below).
PROVIDED_ELSEWHERE = {"bridge", "wrappers"}

# Constructors that are not user API and are deliberately different (see the README).
DIFFERENT_CONSTRUCTORS = {
    # plait.core's GraphDef wraps one nested tuple (hashed once, compared in C); users get
    # GraphDefs from split/graphdef and never build them from Flax's node lists.
    "GraphDef",
}


def _top_level_entries() -> list[tuple[str, str, str]]:
    entries, inside = [], False
    for line in API_FILE.read_text().splitlines():
        if line.startswith("## "):
            if inside:
                break
            inside = line.startswith("## flax.nnx (top-level namespace)")
            continue
        if not inside or not line or line[0] in " #=":
            continue
        name, kind, signature = (line.split(" | ", 2) + ["", ""])[:3]
        entries.append((name.strip(), kind.strip(), signature.strip()))
    return entries


ENTRIES = _top_level_entries()


def _section_names(header: str) -> list[str]:
    names, inside = [], False
    for line in API_FILE.read_text().splitlines():
        if line.startswith("## "):
            if inside:
                break
            inside = line.startswith(header)
            continue
        if inside and line and line[0] not in " #=":
            names.append(line.split(" | ", 1)[0].strip())
    return names


def _split_top(text: str, sep: str = ",") -> list[str]:
    """Splits on ``sep`` outside brackets and quotes."""
    parts, depth, quote, current = [], 0, "", ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            current += ch
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
            current += ch
        elif ch in "([{":
            depth += 1
            current += ch
        elif ch in ")]}":
            depth -= 1
            current += ch
        elif depth == 0 and text.startswith(sep, i):
            parts.append(current)
            current = ""
            i += len(sep)
            continue
        else:
            current += ch
        i += 1
    parts.append(current)
    return [p.strip() for p in parts]


def _parameter_list(signature: str) -> str:
    """The text inside the outer parentheses of ``(...) -> ret``."""
    depth = 0
    for i, ch in enumerate(signature):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return signature[1:i]
    raise ValueError(f"unbalanced signature {signature!r}")


def _flax_parameters(signature: str) -> list[tuple[str, str, bool]]:
    """``[(name, kind, has_default)]`` with kind in positional/keyword/varargs/varkw."""
    params, kind = [], "positional"
    body = _parameter_list(signature)
    pieces = [p for p in _split_top(body) if p]
    if "/" in pieces:
        slash = pieces.index("/")
        before = pieces[:slash]
        pieces = pieces[slash + 1 :]
    else:
        before = []
    for piece in before:
        name = _split_top(piece, ":")[0].split("=")[0].strip()
        params.append((name, "positional_only", "=" in _strip_annotation(piece)))
    for piece in pieces:
        if piece == "*":
            kind = "keyword"
            continue
        if piece.startswith("**"):
            params.append((piece[2:].split(":")[0].strip(), "varkw", True))
            continue
        if piece.startswith("*"):
            params.append((piece[1:].split(":")[0].strip(), "varargs", True))
            kind = "keyword"
            continue
        name = _split_top(piece, ":")[0].split("=")[0].strip()
        params.append((name, kind, "=" in _strip_annotation(piece)))
    return params


def _strip_annotation(piece: str) -> str:
    """``x: int = 3`` -> ``x = 3`` (annotations may contain '=' only inside brackets)."""
    parts = _split_top(piece, ":")
    if len(parts) == 1:
        return piece
    rest = ":".join(parts[1:])
    eq = _split_top(rest, "=")
    return parts[0] + (" = " + eq[1] if len(eq) > 1 else "")


def _our_signature(obj) -> inspect.Signature | None:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    kinds = [p.kind for p in sig.parameters.values()]
    if isinstance(obj, type) and kinds == [
        inspect.Parameter.VAR_POSITIONAL,
        inspect.Parameter.VAR_KEYWORD,
    ]:
        init = inspect.signature(obj.__init__)
        sig = init.replace(parameters=list(init.parameters.values())[1:])
    return sig


def _compatibility_problems(name: str, ours, flax_signature: str) -> list[str]:
    sig = _our_signature(ours)
    if sig is None:
        return []  # builtins without signatures: existence is what can be checked
    alternatives = [a for a in _split_top(flax_signature.split("   (overloads)")[0], " OR ")]
    problems_per_alternative = []
    for alternative in alternatives:
        problems_per_alternative.append(_check_one(name, sig, _flax_parameters(alternative)))
    return min(problems_per_alternative, key=len)


def _check_one(name: str, sig: inspect.Signature, flax_params) -> list[str]:
    P = inspect.Parameter
    ours = list(sig.parameters.values())
    has_varkw = any(p.kind is P.VAR_KEYWORD for p in ours)
    has_varargs = any(p.kind is P.VAR_POSITIONAL for p in ours)
    positional = [p for p in ours if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
    ours_required = [p for p in positional if p.default is P.empty]
    flax_required = [
        (n, k) for n, k, d in flax_params if k in ("positional", "positional_only") and not d
    ]
    problems = []
    # Every call that is valid in Flax must be valid here: plait may give a default to a
    # parameter Flax requires (more lenient), never require one Flax does not.
    if len(ours_required) > len(flax_required):
        problems.append(
            f"{name}: required positional parameters {[p.name for p in ours_required]} "
            f"exceed Flax's {[n for n, _ in flax_required]}"
        )
    for p, (n, k) in zip(ours_required, flax_required, strict=False):
        if k == "positional" and p.name != n and p.kind is not P.POSITIONAL_ONLY:
            problems.append(f"{name}: positional parameter {p.name!r} is {n!r} in Flax")
    flax_positional = [n for n, k, _ in flax_params if k in ("positional", "positional_only")]
    if len(positional) < len(flax_positional) and not has_varargs:
        problems.append(
            f"{name}: takes {len(positional)} positional parameters, Flax takes "
            f"{len(flax_positional)}"
        )
    if any(k == "varargs" for _, k, _ in flax_params) and not has_varargs:
        problems.append(f"{name}: Flax takes *args, this does not")
    by_name = {p.name: p for p in ours}
    for n, k, _ in flax_params:
        if k not in ("positional", "keyword"):
            continue
        p = by_name.get(n)
        keywordable = p is not None and p.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY)
        if not keywordable and not has_varkw:
            problems.append(f"{name}: does not accept the keyword {n!r}")
    return problems


def _missing_names() -> list[str]:
    return [
        name
        for name, _, _ in ENTRIES
        if name not in PROVIDED_ELSEWHERE and not hasattr(nnx, name)
    ]


def test_reference_list_is_complete():
    # The section header of nnx.txt announces 238 top-level names.
    assert len(ENTRIES) == 238


def test_every_flax_nnx_name_exists():
    missing = _missing_names()
    assert not missing, f"{len(missing)} flax.nnx names missing from plait.nnx: {missing}"


def test_signatures_are_compatible():
    problems = []
    for name, kind, signature in ENTRIES:
        if name in PROVIDED_ELSEWHERE or not hasattr(nnx, name):
            continue  # reported by test_every_flax_nnx_name_exists
        ours = getattr(nnx, name)
        if name in DIFFERENT_CONSTRUCTORS:
            continue
        if kind.startswith(("class", "function")) and signature.startswith("("):
            problems += _compatibility_problems(name, ours, signature)
        elif kind == "module":
            if not isinstance(ours, types.ModuleType):
                problems.append(f"{name}: expected a module, got {type(ours).__name__}")
    assert not problems, "incompatible signatures:\n" + "\n".join(problems)


def test_constants_match():
    assert nnx.PARTITION_NAME == "partition_name"


def test_bridge_names_explain_where_they_live():
    try:
        from plait import bridge
    except ImportError:
        with pytest.raises(ImportError, match=r"plait\.bridge, in the distribution plait-bridge"):
            _ = nnx.bridge
        with pytest.raises(ImportError, match="plait-bridge"):
            _ = nnx.wrappers
    else:
        assert nnx.bridge is bridge


def test_signature_checker_detects_incompatibilities():
    # The checker itself must be able to fail.
    def narrower(x, *, y=1):
        return x

    assert _compatibility_problems("f", narrower, "(x, y, *, z: int = 2)")
    assert not _compatibility_problems("f", narrower, "(x, *, y: int = 1)")
    assert _compatibility_problems("g", lambda a, b: a, "(a, /, *, c=1)")
    assert _compatibility_problems("h", lambda *, a: a, "(*args)")
    # A default where Flax requires the argument is compatible.
    assert not _compatibility_problems("k", lambda a, b=1: a, "(a, b, /)")


def test_compat_namespace_presets_graph_mode():
    names = _section_names("## flax.nnx.compat")
    assert len(names) == 34
    missing = [n for n in names if not hasattr(nnx.compat, n)]
    assert not missing, f"nnx.compat lacks {missing}"
    assert nnx.compat.split.keywords == {"graph": True}
    assert nnx.compat.jit.keywords == {"graph": True, "graph_updates": True}


def test_submodule_extras_exist():
    for section, module in [
        ("## flax.nnx.training.metrics", nnx.metrics),
        ("## flax.nnx.training.optimizer", nnx.optimizer),
        ("## flax.nnx.traversals", nnx.traversals),
    ]:
        missing = [n for n in _section_names(section) if not hasattr(module, n)]
        assert not missing, f"{section} lacks {missing}"

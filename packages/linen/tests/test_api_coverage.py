"""Every public name of Flax's ``flax.linen`` (and the training helpers) exists in
plait.linen with a compatible signature.

The reference is ``api/flax_linen_api.txt`` (one line per name: ``name | kind | signature``,
with class members indented below their class). A signature is compatible when every
Flax parameter is accepted by name, parameters with defaults in Flax have defaults here,
positional parameters come in the same order, and extra parameters here are optional.
"""

import importlib
import inspect
from pathlib import Path

import plait.linen.partitioning  # noqa: F401 - as in Flax, only present once imported
import pytest

API_FILE = Path(__file__).parent / "api" / "flax_linen_api.txt"

SECTIONS = {
    "flax.linen (top-level namespace)": "plait.linen",
    "flax.linen.partitioning": "plait.linen.partitioning",
    "flax.training.train_state": "plait.linen.training.train_state",
    "flax.training.common_utils": "plait.linen.training.common_utils",
    "flax.training.early_stopping": "plait.linen.training.early_stopping",
    "flax.training.dynamic_scale": "plait.linen.training.dynamic_scale",
}

# Classes whose members (methods) are checked too.
MEMBER_CHECKED = {
    "Module",
    "Variable",
    "DenyList",
    "Partitioned",
    "LogicallyPartitioned",
    "Sequential",
    "TrainState",
    "EarlyStopping",
    "DynamicScale",
}

# Dataclass fields Flax appends to every Module; plait makes them keyword-only, so they
# are exempt from the positional-order rule.
KEYWORD_ONLY_FIELDS = {"parent", "name"}


def _parse_api() -> dict[str, list[dict]]:
    sections: dict[str, list[dict]] = {}
    current = None
    for line in API_FILE.read_text().splitlines():
        if line.startswith("## "):
            title = line[3:]
            current = next((k for k in SECTIONS if title.startswith(k)), None)
            if current is not None:
                sections[current] = []
            continue
        if current is None or not line.strip() or line.startswith(("#", "=")):
            continue
        parts = line.strip().split(" | ", 2)
        if len(parts) < 2:
            continue
        entry = {"name": parts[0], "kind": parts[1], "sig": parts[2] if len(parts) > 2 else ""}
        if line.startswith("    "):
            if sections[current] and not line.startswith("      "):
                sections[current][-1].setdefault("members", []).append(entry)
        else:
            sections[current].append(entry)
    return sections


def _split_top_level(text: str) -> list[str]:
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def _flax_params(sig: str) -> list[tuple[str, str, bool]] | None:
    """``[(name, kind, has_default)]`` with kind in {'pos', 'kwonly', 'var', 'varkw'}."""
    sig = sig.strip()
    if not sig.startswith("("):
        return None
    depth, end = 0, 0
    for index, ch in enumerate(sig):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0:
            end = index
            break
    params, kind = [], "pos"
    for part in _split_top_level(sig[1:end]):
        if part == "/":
            continue
        if part == "*":
            kind = "kwonly"
            continue
        name = part.split(":")[0].split("=")[0].strip()
        if name.startswith("**"):
            params.append((name[2:], "varkw", False))
        elif name.startswith("*"):
            params.append((name[1:], "var", False))
            kind = "kwonly"
        else:
            params.append((name, kind, _has_top_level_default(part)))
    return params


def _has_top_level_default(part: str) -> bool:
    depth = 0
    for ch in part:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "=" and depth == 0:
            return True
    return False


def _incompatibilities(obj, sig: str, drop_self: bool = False) -> list[str]:
    flax = _flax_params(sig)
    if flax is None:
        return []
    try:
        ours = inspect.signature(obj)
    except (TypeError, ValueError):
        return ["no inspectable signature"]
    our_params = list(ours.parameters.values())
    if drop_self and our_params and our_params[0].name in ("self", "cls"):
        our_params = our_params[1:]
    by_name = {p.name: p for p in our_params}
    has_var = any(p.kind is p.VAR_POSITIONAL for p in our_params)
    has_varkw = any(p.kind is p.VAR_KEYWORD for p in our_params)
    problems = []
    for name, kind, has_default in flax:
        if kind == "var":
            if not has_var:
                problems.append(f"missing *{name}")
            continue
        if kind == "varkw":
            if not has_varkw:
                problems.append(f"missing **{name}")
            continue
        param = by_name.get(name)
        if param is None:
            if not has_varkw:
                problems.append(f"missing parameter {name!r}")
            continue
        if has_default and param.default is param.empty:
            problems.append(f"{name!r} needs a default")
    flax_positional = [n for n, k, _ in flax if k == "pos" and n not in KEYWORD_ONLY_FIELDS]
    our_positional = [
        p.name
        for p in our_params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name in flax_positional
    ]
    if our_positional != flax_positional[: len(our_positional)] or (
        len(our_positional) < len(flax_positional)
        and not has_var
        and any(
            by_name.get(n) is not None and by_name[n].kind is by_name[n].KEYWORD_ONLY
            for n in flax_positional
        )
    ):
        problems.append(f"positional order {our_positional} != {flax_positional}")
    flax_names = {n for n, _, _ in flax}
    for p in our_params:
        if (
            p.name not in flax_names
            and p.default is p.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ):
            problems.append(f"extra required parameter {p.name!r}")
    return problems


API = _parse_api()


def _check_section(section: str) -> tuple[list[str], list[str]]:
    module = importlib.import_module(SECTIONS[section])
    missing, incompatible = [], []
    for entry in API[section]:
        name, kind = entry["name"], entry["kind"]
        if not hasattr(module, name):
            missing.append(name)
            continue
        obj = getattr(module, name)
        if kind == "module":
            if not inspect.ismodule(obj):
                incompatible.append(f"{name}: expected a module, got {type(obj).__name__}")
            continue
        if kind.startswith(("function", "class")) and callable(obj):
            for problem in _incompatibilities(obj, entry["sig"]):
                incompatible.append(f"{name}{entry['sig'][:60]}...: {problem}")
        if name in MEMBER_CHECKED:
            for member in entry.get("members", []):
                if member["kind"] in ("bases", "(bases)") or member["name"].startswith("("):
                    continue
                if not hasattr(obj, member["name"]):
                    missing.append(f"{name}.{member['name']}")
                    continue
                if member["kind"].startswith(("method", "classmethod")):
                    attr = getattr(obj, member["name"])
                    drop = member["kind"].startswith("method")
                    for problem in _incompatibilities(attr, member["sig"], drop_self=drop):
                        incompatible.append(f"{name}.{member['name']}: {problem}")
    return missing, incompatible


def test_the_reference_file_parses():
    assert set(API) == set(SECTIONS)
    assert len(API["flax.linen (top-level namespace)"]) == 142
    assert _flax_params("(a, b: int = f(1, 2), *c, d=3, **e)") == [
        ("a", "pos", False),
        ("b", "pos", True),
        ("c", "var", False),
        ("d", "kwonly", True),
        ("e", "varkw", False),
    ]


@pytest.mark.parametrize("section", list(SECTIONS))
def test_every_flax_name_exists_with_a_compatible_signature(section):
    missing, incompatible = _check_section(section)
    message = []
    if missing:
        message.append(
            f"{len(missing)} name(s) of {section} missing from "
            f"{SECTIONS[section]}: {', '.join(missing)}"
        )
    if incompatible:
        message.append("incompatible signatures:\n  " + "\n  ".join(incompatible))
    assert not message, "\n".join(message)

#!/usr/bin/env python3
"""Map changed files to workspace members, then close over reverse dependencies.

    python3 ci/affected.py REF      # prints affected distribution names, one per line

Rules: a file under packages/<dir>/ selects that member and, transitively, every
member that depends on it; uv.lock, the root pyproject.toml, ci/ and .ci/ select
every member; anything else (README.md, docs) selects none. A path under
packages/ that belongs to no member is an error.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

GLOBAL_INPUTS = ("uv.lock", "pyproject.toml", ".python-version")
GLOBAL_DIRS = ("ci/", ".ci/")


@dataclass(frozen=True)
class Member:
    name: str
    path: Path
    deps: frozenset[str]


def _requirement_name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", req, maxsplit=1)[0].strip().lower()


def load_members(root: Path) -> dict[str, Member]:
    members: dict[str, Member] = {}
    for pyproject in sorted(root.glob("packages/*/pyproject.toml")):
        data = tomllib.loads(pyproject.read_text())
        project = data["project"]
        reqs = list(project.get("dependencies", []))
        for group in data.get("dependency-groups", {}).values():
            reqs += [r for r in group if isinstance(r, str)]
        members[project["name"]] = Member(
            project["name"], pyproject.parent, frozenset(_requirement_name(r) for r in reqs)
        )
    for m in members.values():
        object.__setattr__(m, "deps", frozenset(d for d in m.deps if d in members))
    return members


def topological_order(members: dict[str, Member]) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for dep in sorted(members[name].deps):
            visit(dep)
        order.append(name)

    for name in sorted(members):
        visit(name)
    return order


def dependents_closure(members: dict[str, Member], start: set[str]) -> set[str]:
    selected = set(start)
    changed = True
    while changed:
        changed = False
        for m in members.values():
            if m.name not in selected and m.deps & selected:
                selected.add(m.name)
                changed = True
    return selected


def packages_for_files(root: Path, members: dict[str, Member], files: list[str]) -> set[str]:
    by_dir = {m.path.relative_to(root).as_posix() + "/": m.name for m in members.values()}
    selected: set[str] = set()
    for f in files:
        if f in GLOBAL_INPUTS or f.startswith(GLOBAL_DIRS):
            return set(members)
        if f.startswith("packages/"):
            owner = [name for d, name in by_dir.items() if f.startswith(d)]
            if not owner:
                raise SystemExit(
                    f"{f}: lies under packages/ but in no workspace member; add a pyproject.toml "
                    "for it or move it."
                )
            selected.add(owner[0])
    return selected


def affected_packages(root: Path, base: str) -> list[str]:
    out = subprocess.run(
        ["git", "diff", "--name-only", f"{base}...HEAD"],
        cwd=root, check=True, capture_output=True, text=True,
    ).stdout.split()
    members = load_members(root)
    selected = dependents_closure(members, packages_for_files(root, members, out))
    return [n for n in topological_order(members) if n in selected]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: ci/affected.py GIT_REF")
    print("\n".join(affected_packages(Path(__file__).resolve().parent.parent, sys.argv[1])))

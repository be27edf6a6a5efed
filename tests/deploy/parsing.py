"""Paths and readers for the deployment files: Dockerfile stages (BuildKit's parser), .dockerignore matching,
the scripts in docker/, and the tools the dev extra installs."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import dockerfile

ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = ROOT / "docker"
COMPOSE_FILE = ROOT / "docker-compose.yml"


def load_script(name: str) -> ModuleType:
    """Import docker/NAME.py (docker/ is not a package: the scripts are copied into images)."""
    spec = importlib.util.spec_from_file_location(f"docker_{name}", DOCKER_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def venv_tool(name: str) -> Path | None:
    """A console tool installed next to this interpreter (the dev extra), else on PATH."""
    here = Path(sys.executable).parent / name
    if here.is_file():
        return here
    found = shutil.which(name)
    return Path(found) if found else None


@dataclass
class Stage:
    name: str
    base: str
    commands: list[dockerfile.Command] = field(default_factory=list)

    def all(self, cmd: str) -> list[dockerfile.Command]:
        return [c for c in self.commands if c.cmd == cmd]


def stages(path: Path) -> dict[str, Stage]:
    """Stages by name, with `FROM ${ARG}` resolved from the global ARG defaults."""
    args: dict[str, str] = {}
    out: dict[str, Stage] = {}
    current: Stage | None = None
    for command in dockerfile.parse_file(str(path)):
        if command.cmd == "ARG" and current is None:
            name, _, default = command.value[0].partition("=")
            args[name] = default
        elif command.cmd == "FROM":
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], command.value[0])
            name = command.value[2] if len(command.value) == 3 else str(len(out))
            current = out[name] = Stage(name, base)
        elif current is not None:
            current.commands.append(command)
    return out


def dockerignore() -> Callable[[str], bool]:
    """.dockerignore as Docker applies it: patterns in order, the last one matching the path or one of its parent
    folders decides (`!` re-includes)."""
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pattern = re.escape(line.lstrip("!").strip("/"))
        pattern = (
            pattern.replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        )
        rules.append((re.compile(pattern + "$"), line.startswith("!")))

    def ignored(path: str) -> bool:
        parts = path.strip("/").split("/")
        prefixes = ["/".join(parts[:depth]) for depth in range(1, len(parts) + 1)]
        excluded = False
        for regex, negate in rules:
            if any(regex.match(prefix) for prefix in prefixes):
                excluded = not negate
        return excluded

    return ignored

"""Command-line flags generated from a pydantic-settings class: one `--flag` per field, help from its description.

Environment variables stay the defaults and the flags given win. Flags carry text that pydantic validates exactly
as it validates the environment, so a wrong value gets the same message from either, and exits with status 2.

Shared by both services' command lines (ortserve_common imports neither service): it needs only argparse and
pydantic, which the bridge image holds.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar, Union, get_args, get_origin

from pydantic import ValidationError
from pydantic_settings import BaseSettings, NoDecode

S = TypeVar("S", bound=BaseSettings)


class NoFlag:
    """Field metadata, `Annotated[list[str], NoFlag]` (as pydantic-settings' NoDecode): set by the environment only,
    e.g. secrets, which the process list would show on a command line."""


def add_settings_flags(parser: argparse.ArgumentParser, settings: type[BaseSettings]) -> None:
    """One --flag per field of `settings` (`--no-flag` too for booleans); unset flags parse to None."""
    prefix = settings.model_config.get("env_prefix", "")
    for name, field in settings.model_fields.items():
        if NoFlag in field.metadata:
            continue
        flag = "--" + name.replace("_", "-")
        help_text = f"{field.description or name.replace('_', ' ')} (env {prefix}{name.upper()}; default: "
        help_text = (help_text + f"{_show(field.get_default(call_default_factory=True))})").replace("%", "%%")
        kind = _unoptional(field.annotation)
        if _is_complex(kind) and NoDecode not in field.metadata:
            # pydantic-settings merges a dict from the flags into the environment's instead of replacing it
            raise TypeError(f"{settings.__name__}.{name}: a list or dict flag needs NoDecode and a text validator")
        if kind is bool:  # `--x` = true, `--x false` or `--no-x` = false: both forms the two CLIs always took
            parser.add_argument(flag, dest=name, nargs="?", const="true", default=None, metavar="BOOL", help=help_text)
            parser.add_argument(
                f"--no-{flag[2:]}", dest=name, action="store_const", const="false", help=f"{flag} false"
            )
        elif get_origin(kind) is list:  # `--x a b` (as vLLM's --served-model-name) or one value in the env's form
            parser.add_argument(flag, dest=name, nargs="+", default=None, metavar="TEXT", help=help_text)
        else:
            parser.add_argument(flag, dest=name, default=None, metavar=_metavar(kind), help=help_text)


def settings_from_args(settings: type[S], args: argparse.Namespace, prog: str) -> S:
    """The environment overridden by the flags given; an invalid value from either is `prog: error: …`, status 2."""
    overrides: dict[str, Any] = {}
    for name in settings.model_fields:
        value = getattr(args, name, None)
        if isinstance(value, list) and len(value) == 1:
            value = value[0]  # one value is text, as the environment's: a JSON list or comma-separated
        if value is not None:
            overrides[name] = value
    try:
        return settings(**overrides)
    except ValidationError as e:
        fail(prog, "invalid settings: " + "; ".join(_problem(settings, err) for err in e.errors()))


def fail(prog: str, message: str) -> NoReturn:
    """A clear message and exit status 2, as argparse gives for a bad flag."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    raise SystemExit(2)


def _problem(settings: type[BaseSettings], err: Any) -> str:
    """`--port (ORTSERVE_PORT): Input should be …`; a check across fields has no location."""
    loc = err["loc"]
    if not loc or loc[0] not in settings.model_fields:
        return str(err["msg"])
    name = str(loc[0])
    prefix = settings.model_config.get("env_prefix", "")
    return f"--{name.replace('_', '-')} ({prefix}{name.upper()}): {err['msg']}"


def _unoptional(kind: Any) -> Any:
    """`X | None` → X (a flag always carries a value; None is the default, never given)."""
    if get_origin(kind) in (Union, types.UnionType):
        rest = [arg for arg in get_args(kind) if arg is not type(None)]
        return rest[0] if len(rest) == 1 else kind
    return kind


def _is_complex(kind: Any) -> bool:
    return get_origin(kind) in (list, dict, set, tuple) or kind in (list, dict, set, tuple)


def _metavar(kind: Any) -> str:
    if get_origin(kind) is Literal:
        return "{" + ",".join(map(str, get_args(kind))) + "}"
    names = {int: "INT", float: "FLOAT", Path: "PATH"}
    return names.get(kind, "TEXT")


def _show(default: Any) -> str:
    if default is None:
        return "none"
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, str | list | dict) and not default:
        return "empty"
    return str(default)

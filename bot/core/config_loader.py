"""Load the YAML configuration: `${VAR}` / `${VAR:-default}` interpolation,
pydantic validation, and every error reported as `file:line: path: message`."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bot.core.config import Config, Loc, cross_reference_errors

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class ConfigError:
    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigInvalid(Exception):
    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _LineMap:
    """Line numbers of every mapping key and sequence item in the document."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.lines: dict[Loc, int] = {}
        if root is not None:
            self._walk(root, ())

    def _walk(self, node: yaml.Node, loc: Loc) -> None:
        self.lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*loc, str(key.value))
                self.lines[child] = key.start_mark.line + 1
                self._walk(value, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, (*loc, i))

    def line_for(self, loc: Loc) -> int | None:
        # Pydantic may point below what the file has (a missing field, a union
        # member); report the deepest part of the path that exists.
        for n in range(len(loc), -1, -1):
            if loc[:n] in self.lines:
                return self.lines[loc[:n]]
        return None


def interpolate(value: Any, env: Mapping[str, str], loc: Loc, errors: list[tuple[Loc, str]]) -> Any:
    if isinstance(value, dict):
        return {k: interpolate(v, env, (*loc, str(k)), errors) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, (*loc, i), errors) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if env.get(name):
            return env[name]
        if default is not None:
            return default
        errors.append((loc, f"environment variable {name} is not set (use ${{{name}:-default}})"))
        return ""

    return _VAR.sub(replace, value)


class LineMap(_LineMap):
    """Public name for the line map (runbook files use it too)."""


def parse_yaml(text: str, filename: str) -> tuple[Any, LineMap | None, ConfigError | None]:
    """A YAML document with the line of every key and item, or the YAML error."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            raw = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        return None, None, ConfigError(filename, line, "", f"invalid YAML: {problem}")
    return raw, LineMap(root), None


def parse_config_text(
    text: str, filename: str, env: Mapping[str, str] | None = None
) -> tuple[Config | None, list[ConfigError]]:
    """Validate a configuration document; returns the config or all errors."""
    env = os.environ if env is None else env
    raw, lines, yaml_error = parse_yaml(text, filename)
    if yaml_error is not None or lines is None:
        return None, [yaml_error] if yaml_error else []
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return None, [ConfigError(filename, 1, "", "the file must be a mapping of sections")]

    problems: list[tuple[Loc, str]] = []
    data = interpolate(raw, env, (), problems)
    config: Config | None = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
            problems.append((loc, _pydantic_message(err)))
    problems.extend(cross_reference_errors(data))

    errors = sorted(
        {ConfigError(filename, lines.line_for(loc), format_loc(loc), msg) for loc, msg in problems},
        key=lambda e: (e.line or 0, e.path, e.message),
    )
    return (None if errors else config), errors


def _pydantic_message(err: Any) -> str:
    msg = str(err["msg"])
    if err["type"] == "extra_forbidden":
        return "unknown setting (check the spelling)"
    if err["type"] == "missing":
        return "required setting is missing"
    return msg.removeprefix("Value error, ")


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        error = ConfigError(str(path), None, "", f"cannot read: {exc.strerror}")
        raise ConfigInvalid([error]) from exc
    config, errors = parse_config_text(text, str(path), env)
    if errors or config is None:
        raise ConfigInvalid(errors)
    # Runbook directories are relative to the file that names them, wherever
    # the bot is started from.
    base = path.resolve().parent
    runbooks = config.runbooks.model_copy(
        update={"paths": [str(base / p) for p in config.runbooks.paths]}
    )
    return config.model_copy(update={"runbooks": runbooks})

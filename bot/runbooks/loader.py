"""Load runbooks from their directories, reporting every problem as
`file:line: path: message` (the same form as the configuration's errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment
from pydantic import ValidationError

from bot.core.config import Loc
from bot.core.config_loader import ConfigError, format_loc, parse_yaml
from bot.runbooks.format import STEP_TYPES, Runbook

# What a template may use besides the runbook's own parameters.
CONTEXT_NAMES = frozenset({"alert", "labels", "annotations", "incident", "steps", "now"})
_ENV = SandboxedEnvironment()


def template_names(text: str) -> set[str]:
    """Variables a template reads (raises TemplateSyntaxError)."""
    return set(meta.find_undeclared_variables(_ENV.parse(text)))


def _strings(value: Any, loc: Loc) -> list[tuple[Loc, str]]:
    if isinstance(value, str):
        return [(loc, value)] if "{{" in value or "{%" in value else []
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, (*loc, str(k)))]
    if isinstance(value, list):
        return [s for i, v in enumerate(value) for s in _strings(v, (*loc, i))]
    return []


def check_runbook(
    raw: dict[str, Any], allowlist: list[str]
) -> tuple[Runbook | None, list[tuple[Loc, str]]]:
    problems: list[tuple[Loc, str]] = []
    runbook: Runbook | None = None
    try:
        runbook = Runbook.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
            if len(loc) > 2 and loc[0] == "steps" and loc[2] in STEP_TYPES:
                loc = loc[:2] + loc[3:]  # pydantic names the union member; people don't
            if err["type"] == "union_tag_invalid":
                tag = (err.get("ctx") or {}).get("tag")
                problems.append(
                    (loc[:3], f"unknown step type '{tag}' (one of: {', '.join(STEP_TYPES)})")
                )
            elif err["type"] == "union_tag_not_found":
                problems.append((loc[:3], "a step needs a type"))
            elif err["type"] == "extra_forbidden":
                problems.append((loc, "unknown setting (check the spelling)"))
            elif err["type"] == "missing":
                problems.append((loc, "required setting is missing"))
            else:
                problems.append((loc, str(err["msg"]).removeprefix("Value error, ")))
    params = {
        p["name"]
        for p in raw.get("parameters") or []
        if isinstance(p, dict) and isinstance(p.get("name"), str)
    }
    known = params | CONTEXT_NAMES
    raw_steps = raw.get("steps")
    steps: list[Any] = raw_steps if isinstance(raw_steps, list) else []
    seen: set[str] = set()
    for i, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        name = step.get("name")
        if isinstance(name, str):
            if name in seen:
                problems.append((("steps", i, "name"), f"two steps are called '{name}'"))
            seen.add(name)
        strings = _strings(step, ("steps", i))
        when = step.get("when")
        if isinstance(when, str) and "{{" not in when and "{%" not in when:
            # A bare condition (`steps.check.value > 0.05`) is a Jinja expression.
            strings.append((("steps", i, "when"), "{{ " + when + " }}"))
        for loc, text in strings:
            try:
                unknown = sorted(template_names(text) - known)
            except TemplateSyntaxError as exc:
                problems.append((loc, f"template error: {exc.message}"))
                continue
            for var in unknown:
                problems.append(
                    (
                        loc,
                        f"template uses '{var}', which is not a parameter "
                        f"(parameters: {', '.join(sorted(str(p) for p in params)) or 'none'})",
                    )
                )
    for i, step in enumerate(steps):
        # Checked on the raw file, so it is reported even when other steps are wrong.
        command = step.get("command") if isinstance(step, dict) else None
        if (
            isinstance(step, dict)
            and step.get("type") == "shell"
            and isinstance(command, list)
            and command
            and command[0] not in allowlist
        ):
            problems.append(
                (
                    ("steps", i, "command"),
                    f"'{command[0]}' is not on the shell allowlist "
                    f"(runbooks.shell_allowlist: {', '.join(allowlist) or 'empty'})",
                )
            )
    if runbook is not None:
        for i, param in enumerate(runbook.parameters):
            if (
                param.allowed is not None
                and param.default is not None
                and param.default not in param.allowed
            ):
                problems.append(
                    (
                        ("parameters", i, "default"),
                        f"default {param.default!r} is not one of {param.allowed}",
                    )
                )
    return (runbook if not problems else None), problems


def load_runbooks(
    directories: list[Path], allowlist: list[str]
) -> tuple[list[Runbook], list[ConfigError]]:
    runbooks: list[Runbook] = []
    errors: list[ConfigError] = []
    names: dict[str, Path] = {}
    for directory in directories:
        for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
            text = path.read_text(encoding="utf-8")
            raw, lines, yaml_error = parse_yaml(text, str(path))
            if yaml_error is not None or lines is None:
                errors.extend([yaml_error] if yaml_error else [])
                continue
            if not isinstance(raw, dict):
                errors.append(ConfigError(str(path), 1, "", "a runbook is a mapping"))
                continue
            runbook, problems = check_runbook(raw, allowlist)
            errors.extend(
                ConfigError(str(path), lines.line_for(loc), format_loc(loc), msg)
                for loc, msg in problems
            )
            if runbook is not None:
                if runbook.name in names:
                    errors.append(
                        ConfigError(
                            str(path),
                            lines.line_for(("name",)),
                            "name",
                            f"also the name of {names[runbook.name]}",
                        )
                    )
                    continue
                names[runbook.name] = path
                runbooks.append(runbook)
    return runbooks, errors

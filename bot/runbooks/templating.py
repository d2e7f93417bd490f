"""Resolving a runbook's parameters and rendering its templates.

Templates run in Jinja's sandbox with StrictUndefined: a name that is not
there is an error, never an empty string quietly passed to kubectl. A dry
run renders outputs of steps that have not run as visible placeholders
(`<steps.measure.value>`) so the plan shows exactly where they go.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from bot.core.errors import ChatOpsError
from bot.runbooks.format import Parameter, Runbook

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off", ""}


class TemplateFailed(ChatOpsError):
    """A template could not be rendered (a missing value, a type error)."""


class Placeholder:
    """Stands for a value only a real run will know (dry-run rendering)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __getattr__(self, name: str) -> Placeholder:
        if name.startswith("_"):
            raise AttributeError(name)
        return Placeholder(f"{self.path}.{name}")

    def __getitem__(self, key: object) -> Placeholder:
        return Placeholder(f"{self.path}[{key!r}]")

    def __str__(self) -> str:
        return f"<{self.path}>"

    def __bool__(self) -> bool:
        raise TemplateFailed(f"{self.path} is only known when the runbook runs")

    def _compare(self, _other: object) -> bool:
        raise TemplateFailed(f"{self.path} is only known when the runbook runs")

    __lt__ = __le__ = __gt__ = __ge__ = _compare


def _coerce(param: Parameter, raw: Any) -> Any:
    if param.type == "string":
        return str(raw)
    text = str(raw).strip()
    if param.type == "boolean":
        if isinstance(raw, bool):
            return raw
        if text.lower() in _TRUE | _FALSE - {""}:
            return text.lower() in _TRUE
        raise ChatOpsError(f"{param.name} must be true or false, not '{raw}'.")
    try:
        return int(text) if param.type == "integer" else float(text)
    except ValueError:
        kind = "a whole number" if param.type == "integer" else "a number"
        raise ChatOpsError(f"{param.name} must be {kind}, not '{raw}'.") from None


def resolve_params(
    runbook: Runbook, given: dict[str, str], labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """Parameters from what was typed, then the incident's labels, then the
    defaults; every problem is reported at once."""
    known = {p.name for p in runbook.parameters}
    problems = [
        f"'{name}' is not a parameter of {runbook.name}"
        f" (parameters: {', '.join(sorted(known)) or 'none'})"
        for name in given
        if name not in known
    ]
    values: dict[str, Any] = {}
    for param in runbook.parameters:
        raw = given.get(param.name)
        if raw is None and labels:
            raw = labels.get(param.name)
        if raw is None:
            if param.default is not None:
                values[param.name] = param.default
            elif param.required:
                problems.append(f"{param.name} is required ({param.description or param.type})")
            else:
                values[param.name] = None
            continue
        try:
            value = _coerce(param, raw)
        except ChatOpsError as exc:
            problems.append(exc.message.rstrip("."))
            continue
        if param.allowed is not None and value not in param.allowed:
            allowed = ", ".join(str(a) for a in param.allowed)
            problems.append(f"{param.name} must be one of {allowed}, not '{raw}'")
            continue
        values[param.name] = value
    if problems:
        raise ChatOpsError("Cannot run " + runbook.name + ": " + "; ".join(problems) + ".")
    return values


def context_for(
    params: dict[str, Any],
    extra: dict[str, Any],
    outputs: dict[str, Any] | None,
    now: datetime,
) -> dict[str, Any]:
    """The names a template sees. `outputs` None means a dry run."""
    ctx: dict[str, Any] = {
        "labels": {},
        "annotations": {},
        "alert": {},
        "incident": {},
        **extra,
        **params,
        "now": now.isoformat(timespec="seconds"),
    }
    ctx["steps"] = Placeholder("steps") if outputs is None else outputs
    return ctx


def uses_outputs(text: str) -> bool:
    """Whether a template reads earlier steps' outputs (known only when running)."""
    from bot.runbooks.loader import template_names

    wrapped = text if "{{" in text or "{%" in text else "{{ " + text + " }}"
    try:
        return "steps" in template_names(wrapped)
    except TemplateError:
        return False


def render(value: Any, ctx: dict[str, Any], *, planning: bool = False) -> Any:
    """Render every template string inside a step's settings. When planning
    (a dry run), a template that reads earlier outputs is shown as written."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        if planning and uses_outputs(value):
            return value
        try:
            return _ENV.from_string(value).render(ctx)
        except TemplateFailed:
            raise
        except TemplateError as exc:
            raise TemplateFailed(f"template '{value}': {exc.message or exc}") from None
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise TemplateFailed(f"template '{value}': {exc}") from None
    if isinstance(value, dict):
        return {k: render(v, ctx, planning=planning) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, ctx, planning=planning) for v in value]
    return value


def condition(expression: str, ctx: dict[str, Any]) -> bool:
    """A `when:` condition: a Jinja expression (`steps.measure.value > 0.05`),
    or a template whose text reads as true or false."""
    try:
        if "{{" in expression or "{%" in expression:
            text = str(render(expression, ctx)).strip().lower()
            if text in _TRUE or text in _FALSE:
                return text in _TRUE
            raise TemplateFailed(f"when: '{expression}' gave '{text}', not true or false")
        return bool(_ENV.compile_expression(expression, undefined_to_none=False)(ctx))
    except TemplateFailed:
        raise
    except TemplateError as exc:
        raise TemplateFailed(f"when: '{expression}': {exc.message or exc}") from None
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise TemplateFailed(f"when: '{expression}': {exc}") from None

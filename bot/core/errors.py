"""The exceptions a person may see, in one place.

Commands raise these; the dispatcher turns them into a reply (and, for a
refusal, an audit entry). Anything else is a bug: logged with a reference,
and the person gets the reference, never a traceback.
"""

from __future__ import annotations

from bot.core.grammar import UsageError

__all__ = ["ChatOpsError", "NotFound", "Refused", "UsageError"]


class ChatOpsError(Exception):
    """An error whose message is written for the person who asked."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ChatOpsError):
    pass


class Refused(ChatOpsError):
    """A policy said no (role, lock, freeze, failing checks...). Always audited."""

    def __init__(
        self,
        message: str,
        *,
        action: str,
        target: str | None = None,
        environment: str | None = None,
        reason: str = "refused",
    ) -> None:
        super().__init__(message)
        self.action = action
        self.target = target
        self.environment = environment
        self.reason = reason

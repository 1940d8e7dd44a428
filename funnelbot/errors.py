"""Errors a user can fix: a message key and its parameters, translated at the edge.

The domain and the parsers raise these; the Slack layer and the CLI render them in the
user's language. Anything else is a bug: logged, and answered with a generic apology.
"""

from __future__ import annotations


class UserError(Exception):
    """`code` is a message-catalogue key (e.g. 'error.bad_amount'); `params` fill it."""

    def __init__(self, code: str, **params: object) -> None:
        super().__init__(code)
        self.code = code
        self.params = params

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.params!r})"


class NotFound(UserError):
    pass


class Forbidden(UserError):
    pass


class StaleVersion(UserError):
    """A button drawn for an older version of the deal: nothing changes."""


class Ambiguous(UserError):
    """A name prefix that matches several deals; `candidates` are (number, name) pairs."""

    def __init__(self, ref: str, candidates: list[tuple[int, str]]) -> None:
        super().__init__("error.ambiguous_ref", ref=ref, count=len(candidates))
        self.candidates = candidates


class AtLastOpenStage(UserError):
    """`advance` from the last open stage: the user must choose won or lost."""

    def __init__(self, number: int, version: int) -> None:
        super().__init__("deal.last_open_stage", number=number)
        self.number = number
        self.version = version


class CriteriaRequired(UserError):
    """Leaving a stage forward needs its exit criteria confirmed first.

    `target` is the stage key the blocked change was going to (None: the next stage), so
    that confirming the criteria completes that very change."""

    def __init__(
        self, number: int, version: int, stage_key: str, target: str | None = None
    ) -> None:
        super().__init__("deal.criteria_required", number=number, stage=stage_key)
        self.number = number
        self.version = version
        self.stage_key = stage_key
        self.target = target

"""The team's funnel definition as data (SPEC §2, §6): read it, validate it, diff it, apply it.

One set of rules for `funnelbot stages show|apply` and the Slack stages modal; nothing
here knows Slack. The definition is the ordered list of *open* stages; `won` and `lost`
are implicit and never part of it.

Rules:
- `specs_from_data` / `validate_specs` check the whole list before anything is touched;
  every problem is a `UserError` whose params name the stage (`stage`: its key, or `#n`
  when the key itself is the problem; `index`: 1-based) and the `field`.
- `apply` changes rows in the caller's transaction and never commits. History is never
  rewritten: a renamed stage is the same row (same id) with new names; a removed stage is
  deactivated (`active = False`) and its rows stay; adding a key that was removed before
  brings that row back, history and all.
- Removing a stage that holds open deals is refused (`stages.holds_deals`) unless
  `move_to` names an open stage of the new list; then each deal is moved through the deal
  domain (one history row by the actor, version bumped).
- Open stages get positions 1..n in list order; `won`/`lost` keep theirs. An inactive
  open stage takes the position of the nearest surviving stage before it in the old
  order (0 when none): the metrics rank history by position, and this keeps a deal that
  only ever entered a removed stage counted as having reached the stages before it, and
  not the ones after it.
- Exit criteria are diffed by text: a kept item keeps its id (a confirmation or an open
  modal that carries it stays valid), a dropped one is deactivated, a new one is added
  (or a dropped one with the same text comes back), and the list order is the file order.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy import orm as so
from sqlalchemy.orm.exc import StaleDataError

from funnelbot import deals as domain
from funnelbot.errors import Forbidden, UserError
from funnelbot.models import LOST, OPEN, WON, Deal, ExitCriterion, Stage, Workspace

KEY_RE = re.compile(r"[a-z][a-z0-9_]{0,39}")
RESERVED_KEYS = (WON, LOST)
FIELDS = ("key", "name", "stall_days", "probability", "exit_criteria")
NAME_LANGS = ("en", "zh")
MAX_NAME = 80  # stages.name_en / name_zh are String(80)
MAX_CRITERION = 300  # exit_criteria.text is String(300)
MAX_CRITERIA = 20
MAX_STAGES = 50  # open positions 1..n must stay below won's (100)
MAX_STALL_DAYS = 3650
PROBABILITY_STEP = Decimal("0.0001")  # stages.probability is Numeric(5, 4)
FORMATS = ("yaml", "json")


# --- the definition -------------------------------------------------------------------


@dataclass(frozen=True)
class StageSpec:
    """One open stage as an admin defines it."""

    key: str  # lowercase slug [a-z][a-z0-9_]{0,39}; not 'won'/'lost'
    name_en: str
    name_zh: str
    stall_days: int | None  # >= 1, or None: never stalled
    probability: Decimal  # 0 <= p <= 1, four decimals
    exit_criteria: tuple[str, ...] = ()  # each 1..300 chars, no duplicates

    def name(self, lang: str) -> str:
        return self.name_zh if lang.startswith("zh") else self.name_en


def _label(index: int, key: object = None) -> str:
    """How an error names a stage: its key when that is usable, else its place."""
    if isinstance(key, str) and KEY_RE.fullmatch(key):
        return key
    return f"#{index}"


def _show(value: object, limit: int = 60) -> str:
    if value is None:
        return "null"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return "text"
    if isinstance(value, int | float | Decimal):
        return "a number"
    return type(value).__name__


def _clean_key(value: object, index: int) -> str:
    key = value.strip() if isinstance(value, str) else value
    if key is None or key == "":
        raise UserError("stages.key_required", stage=f"#{index}", index=index, field="key")
    if not isinstance(key, str) or not KEY_RE.fullmatch(key):
        raise UserError(
            "stages.bad_key", stage=f"#{index}", index=index, field="key", value=_show(key)
        )
    if key in RESERVED_KEYS:
        raise UserError("stages.reserved_key", stage=key, index=index, field="key", value=key)
    return key


def _clean_name(value: object, label: str, index: int, lang: str) -> str:
    name_field = f"name.{lang}"
    if value is None or (isinstance(value, str) and not value.strip()):
        raise UserError("stages.name_required", stage=label, index=index, field=name_field)
    if not isinstance(value, str):
        raise UserError(
            "stages.bad_shape",
            stage=label,
            index=index,
            field=name_field,
            expected="text",
            got=_type_name(value),
        )
    name = " ".join(value.split())  # one line: names sit in buttons, selects and charts
    if len(name) > MAX_NAME:
        raise UserError(
            "stages.name_too_long",
            stage=label,
            index=index,
            field=name_field,
            length=len(name),
            limit=MAX_NAME,
        )
    return name


def _clean_stall_days(value: object, label: str, index: int) -> int | None:
    if value is None:
        return None
    days: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        days = value
    elif (
        isinstance(value, float)
        and value.is_integer()
        or isinstance(value, Decimal)
        and value.is_finite()
        and value == value.to_integral_value()
    ):
        days = int(value)
    if days is None or not 1 <= days <= MAX_STALL_DAYS:
        raise UserError(
            "stages.bad_stall_days",
            stage=label,
            index=index,
            field="stall_days",
            value=_show(value),
            limit=MAX_STALL_DAYS,
        )
    return days


def _clean_probability(value: object, label: str, index: int) -> Decimal:
    probability: Decimal | None = None
    if isinstance(value, int | float | Decimal | str) and not isinstance(value, bool):
        try:
            probability = Decimal(str(value).strip())
        except InvalidOperation:
            probability = None
    if probability is None or not probability.is_finite() or not 0 <= probability <= 1:
        raise UserError(
            "stages.bad_probability",
            stage=label,
            index=index,
            field="probability",
            value=_show(value),
        )
    return probability.quantize(PROBABILITY_STEP, rounding=ROUND_HALF_UP)


def _clean_criteria(value: object, label: str, index: int) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise UserError(
            "stages.bad_shape",
            stage=label,
            index=index,
            field="exit_criteria",
            expected="a list of texts",
            got=_type_name(value),
        )
    if len(value) > MAX_CRITERIA:
        raise UserError(
            "stages.too_many_criteria",
            stage=label,
            index=index,
            field="exit_criteria",
            count=len(value),
            limit=MAX_CRITERIA,
        )
    texts: list[str] = []
    seen: set[str] = set()
    for number, item in enumerate(value, 1):
        text = " ".join(item.split()) if isinstance(item, str) else None
        if not text or len(text) > MAX_CRITERION:
            raise UserError(
                "stages.bad_criterion",
                stage=label,
                index=index,
                field="exit_criteria",
                number=number,
                value=_show(item),
                limit=MAX_CRITERION,
            )
        if text.casefold() in seen:
            raise UserError(
                "stages.duplicate_criterion",
                stage=label,
                index=index,
                field="exit_criteria",
                text=text,
            )
        seen.add(text.casefold())
        texts.append(text)
    return tuple(texts)


def _spec(item: StageSpec, index: int) -> StageSpec:
    """One StageSpec, cleaned by the same rules as the file (the modal builds these)."""
    key = _clean_key(item.key, index)
    return StageSpec(
        key=key,
        name_en=_clean_name(item.name_en, key, index, "en"),
        name_zh=_clean_name(item.name_zh, key, index, "zh"),
        stall_days=_clean_stall_days(item.stall_days, key, index),
        probability=_clean_probability(item.probability, key, index),
        exit_criteria=_clean_criteria(list(item.exit_criteria), key, index),
    )


def validate_specs(specs: Iterable[StageSpec]) -> list[StageSpec]:
    """The whole list, cleaned, or the first problem as a UserError."""
    specs = list(specs)
    if not specs:
        raise UserError("stages.empty")
    if len(specs) > MAX_STAGES:
        raise UserError("stages.too_many", count=len(specs), limit=MAX_STAGES)
    cleaned = [_spec(spec, index) for index, spec in enumerate(specs, 1)]
    first_at: dict[str, int] = {}
    for index, spec in enumerate(cleaned, 1):
        if spec.key in first_at:
            raise UserError(
                "stages.duplicate_key",
                stage=spec.key,
                index=index,
                field="key",
                first=first_at[spec.key],
                second=index,
            )
        first_at[spec.key] = index
    # `/deal move #4 方案` finds a stage by key or either name: those must not collide.
    owner: dict[str, str] = {}
    for index, spec in enumerate(cleaned, 1):
        for term in {spec.key, spec.name_en.casefold(), spec.name_zh.casefold()}:
            other = owner.setdefault(term, spec.key)
            if other != spec.key:
                raise UserError(
                    "stages.duplicate_name",
                    stage=spec.key,
                    index=index,
                    field="name",
                    name=term,
                    other=other,
                )
    return cleaned


def specs_from_data(data: object) -> list[StageSpec]:
    """StageSpecs from the file shape: a list of `{key, name: {en, zh}, stall_days,
    probability, exit_criteria: [text, …]}`; the first problem raises a UserError."""
    if data is None:
        raise UserError("stages.empty")
    if not isinstance(data, list):
        raise UserError("stages.not_a_list", got=_type_name(data))
    specs: list[StageSpec] = []
    for index, item in enumerate(data, 1):
        if not isinstance(item, Mapping):
            raise UserError(
                "stages.bad_shape",
                stage=f"#{index}",
                index=index,
                field="stage",
                expected="a mapping with key, name, stall_days, probability, exit_criteria",
                got=_type_name(item),
            )
        label = _label(index, item.get("key"))
        for name in item:
            if name not in FIELDS:
                raise UserError(
                    "stages.unknown_field",
                    stage=label,
                    index=index,
                    field=_show(name),
                    allowed=", ".join(FIELDS),
                )
        key = _clean_key(item.get("key"), index)
        names = item.get("name")
        if names is None:
            raise UserError("stages.name_required", stage=key, index=index, field="name.en")
        if not isinstance(names, Mapping):
            raise UserError(
                "stages.bad_shape",
                stage=key,
                index=index,
                field="name",
                expected="a mapping {en: …, zh: …}",
                got=_type_name(names),
            )
        for lang in names:
            if lang not in NAME_LANGS:
                raise UserError(
                    "stages.unknown_field",
                    stage=key,
                    index=index,
                    field=f"name.{_show(lang)}",
                    allowed="name.en, name.zh",
                )
        if "probability" not in item:
            raise UserError(
                "stages.bad_probability",
                stage=key,
                index=index,
                field="probability",
                value="(missing)",
            )
        specs.append(
            StageSpec(
                key=key,
                name_en=_clean_name(names.get("en"), key, index, "en"),
                name_zh=_clean_name(names.get("zh"), key, index, "zh"),
                stall_days=_clean_stall_days(item.get("stall_days"), key, index),
                probability=_clean_probability(item.get("probability"), key, index),
                exit_criteria=_clean_criteria(item.get("exit_criteria"), key, index),
            )
        )
    return validate_specs(specs)


def _number(value: Decimal) -> int | float:
    value = value.normalize()
    return int(value) if value == value.to_integral_value() else float(value)


def specs_to_data(specs: Iterable[StageSpec]) -> list[dict[str, Any]]:
    return [
        {
            "key": spec.key,
            "name": {"en": spec.name_en, "zh": spec.name_zh},
            "stall_days": spec.stall_days,
            "probability": _number(spec.probability),
            "exit_criteria": list(spec.exit_criteria),
        }
        for spec in specs
    ]


def dump(specs: Iterable[StageSpec], fmt: str = "yaml") -> str:
    """The definition as a file an admin can keep in version control (Chinese stays readable)."""
    data = specs_to_data(specs)
    if fmt == "json":
        return json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(
            data, allow_unicode=True, sort_keys=False, default_flow_style=False, width=100
        )
    raise ValueError(f"unknown format {fmt!r}")


def load(text: str) -> Any:
    """The parsed file (YAML, and so JSON too); a syntax error is a UserError."""
    try:
        return yaml.safe_load(text.lstrip("\ufeff"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise UserError("stages.bad_file", detail=f"{where}{problem}") from None


# --- reading the database -------------------------------------------------------------


def _active_criteria(
    session: so.Session, stage_ids: Sequence[int]
) -> dict[int, list[ExitCriterion]]:
    result: dict[int, list[ExitCriterion]] = {sid: [] for sid in stage_ids}
    if not stage_ids:
        return result
    rows = session.scalars(
        sa.select(ExitCriterion)
        .where(ExitCriterion.stage_id.in_(stage_ids), ExitCriterion.active)
        .order_by(ExitCriterion.position, ExitCriterion.id)
    )
    for row in rows:
        result[row.stage_id].append(row)
    return result


def _spec_of(stage: Stage, criteria: Sequence[ExitCriterion]) -> StageSpec:
    return StageSpec(
        key=stage.key,
        name_en=stage.name_en,
        name_zh=stage.name_zh,
        stall_days=stage.stall_days,
        probability=Decimal(stage.probability).quantize(PROBABILITY_STEP),
        exit_criteria=tuple(c.text for c in criteria),
    )


def current_specs(session: so.Session, team_id: str) -> list[StageSpec]:
    """The active open stages in funnel order, with their active exit criteria."""
    stages = domain.open_stages(session, team_id)
    criteria = _active_criteria(session, [s.id for s in stages])
    return [_spec_of(s, criteria[s.id]) for s in stages]


def _all_stages(session: so.Session, team_id: str) -> list[Stage]:
    """Every stage row of the team, active or not."""
    return list(
        session.scalars(
            sa.select(Stage).where(Stage.team_id == team_id).order_by(Stage.position, Stage.id)
        )
    )


def _open_deal_counts(session: so.Session, stage_ids: Sequence[int]) -> dict[int, int]:
    if not stage_ids:
        return {}
    return {
        sid: int(n)
        for sid, n in session.execute(
            sa.select(Deal.stage_id, sa.func.count())
            .where(Deal.stage_id.in_(stage_ids), Deal.status == OPEN)
            .group_by(Deal.stage_id)
        )
    }


# --- the plan -------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldChange:
    key: str
    field: str  # 'name', 'stall_days' or 'probability'
    old: object
    new: object


@dataclass
class StagePlan:
    """What applying a definition changes. Keys are stage keys; `added` includes
    `reactivated` (keys removed earlier that come back with their history)."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    renamed: list[str] = field(default_factory=list)
    reordered: bool = False
    changed: list[str] = field(default_factory=list)  # stall days, probability or criteria
    moves: dict[str, int] = field(default_factory=dict)  # stage key -> open deals to move
    reactivated: list[str] = field(default_factory=list)
    move_to: str | None = None
    old_order: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    field_changes: list[FieldChange] = field(default_factory=list)
    criteria_added: dict[str, list[str]] = field(default_factory=dict)
    criteria_removed: dict[str, list[str]] = field(default_factory=dict)
    criteria_reordered: list[str] = field(default_factory=list)
    names: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (en, zh), new

    @property
    def empty(self) -> bool:
        return not (
            self.added
            or self.removed
            or self.renamed
            or self.reordered
            or self.changed
            or self.moves
        )

    @property
    def deals_to_move(self) -> int:
        return sum(self.moves.values())

    def check(self) -> None:
        """Refuse to strand open deals: `stages.holds_deals` names the first stage."""
        if self.moves and self.move_to is None:
            key, count = next(iter(self.moves.items()))
            raise UserError(
                "stages.holds_deals",
                stage=key,
                count=count,
                total=self.deals_to_move,
                stages=", ".join(self.moves),
                choices=", ".join(self.order),
            )


def plan(
    session: so.Session,
    team_id: str,
    specs: Iterable[StageSpec],
    *,
    move_to: str | None = None,
) -> StagePlan:
    """What `apply` would change; raises UserError for an invalid list or `move_to`.
    Does not raise for deals that need a `move_to` (see `StagePlan.check`)."""
    specs = validate_specs(specs)
    rows = _all_stages(session, team_id)
    terminal = [s for s in rows if s.kind != OPEN and s.active]
    current = [s for s in rows if s.kind == OPEN and s.active]
    by_key = {s.key: s for s in rows}
    current_keys = [s.key for s in current]
    new_keys = [s.key for s in specs]

    # A name of an open stage must not be mistaken for won or lost.
    taken = {
        t: s.key for s in terminal for t in (s.key, s.name_en.casefold(), s.name_zh.casefold())
    }
    for index, spec in enumerate(specs, 1):
        for term in (spec.name_en.casefold(), spec.name_zh.casefold()):
            if term in taken:
                raise UserError(
                    "stages.duplicate_name",
                    stage=spec.key,
                    index=index,
                    field="name",
                    name=term,
                    other=taken[term],
                )
        existing = by_key.get(spec.key)
        if existing is not None and existing.kind != OPEN:
            raise UserError(
                "stages.reserved_key", stage=spec.key, index=index, field="key", value=spec.key
            )

    result = StagePlan(old_order=current_keys, order=new_keys, move_to=move_to)
    result.names = {s.key: (s.name_en, s.name_zh) for s in specs}
    if move_to is not None and move_to not in new_keys:
        raise UserError("stages.bad_move_to", target=move_to, choices=", ".join(new_keys))

    kept = [k for k in current_keys if k in new_keys]
    result.added = [k for k in new_keys if k not in current_keys]
    result.reactivated = [k for k in result.added if k in by_key]
    result.removed = [k for k in current_keys if k not in new_keys]
    result.reordered = kept != [k for k in new_keys if k in current_keys]

    compared = [s for s in specs if s.key in by_key]  # kept and reactivated stages
    criteria = _active_criteria(session, [by_key[s.key].id for s in compared])
    for spec in specs:
        row = by_key.get(spec.key)
        old_texts = [c.text for c in criteria[row.id]] if row is not None else []
        new_texts = list(spec.exit_criteria)
        added = [t for t in new_texts if t not in old_texts]
        dropped = [t for t in old_texts if t not in new_texts]
        if added:
            result.criteria_added[spec.key] = added
        if dropped:
            result.criteria_removed[spec.key] = dropped
        if row is None or not row.active:
            continue
        old = _spec_of(row, criteria[row.id])
        if (old.name_en, old.name_zh) != (spec.name_en, spec.name_zh):
            result.renamed.append(spec.key)
            result.field_changes.append(
                FieldChange(
                    spec.key,
                    "name",
                    f"{old.name_en} / {old.name_zh}",
                    f"{spec.name_en} / {spec.name_zh}",
                )
            )
        criteria_changed = old_texts != new_texts
        if criteria_changed and not added and not dropped:
            result.criteria_reordered.append(spec.key)
        for name in ("stall_days", "probability"):
            if getattr(old, name) != getattr(spec, name):
                result.field_changes.append(
                    FieldChange(spec.key, name, getattr(old, name), getattr(spec, name))
                )
        if (
            old.stall_days != spec.stall_days
            or old.probability != spec.probability
            or criteria_changed
        ):
            result.changed.append(spec.key)

    # Open deals in stages that will not be active: those being removed now, and any left
    # behind in a stage removed earlier (a deal moved there while it was being removed).
    leaving = [s for s in rows if s.kind == OPEN and s.key not in new_keys]
    counts = _open_deal_counts(session, [s.id for s in leaving])
    result.moves = {s.key: counts[s.id] for s in leaving if counts.get(s.id)}
    return result


# --- applying -------------------------------------------------------------------------


def _sync_criteria(session: so.Session, team_id: str, stage: Stage, texts: Sequence[str]) -> None:
    rows = list(
        session.scalars(
            sa.select(ExitCriterion)
            .where(ExitCriterion.stage_id == stage.id)
            .order_by(ExitCriterion.active.desc(), ExitCriterion.id.desc())
        )
    )
    active: dict[str, ExitCriterion] = {}
    inactive: dict[str, ExitCriterion] = {}
    for row in rows:  # active first; among inactive ones the latest wins
        (active if row.active else inactive).setdefault(row.text, row)
    wanted = set(texts)
    for row in rows:
        if row.active and (row.text not in wanted or active.get(row.text) is not row):
            row.active = False
    for position, text in enumerate(texts, 1):
        row = active.get(text) or inactive.get(text)
        if row is None:
            session.add(
                ExitCriterion(
                    team_id=team_id, stage_id=stage.id, position=position, text=text, active=True
                )
            )
        else:
            row.position = position
            row.active = True


def apply(
    session: so.Session,
    team_id: str,
    specs: Iterable[StageSpec],
    actor: domain.Actor,
    *,
    move_to: str | None,
    now: dt.datetime,
) -> StagePlan:
    """Make the team's open stages match `specs`, in the caller's transaction."""
    if not (actor.is_admin or actor.is_manager):
        raise Forbidden("stages.forbidden")
    specs = validate_specs(specs)
    domain.ensure_workspace(session, team_id, now)
    # One definition change at a time per team (a no-op lock on SQLite, which has one writer).
    session.get(Workspace, team_id, with_for_update=True, populate_existing=True)
    result = plan(session, team_id, specs, move_to=move_to)
    result.check()
    if result.empty:
        return result

    rows = _all_stages(session, team_id)
    ranks_before = {s.id: s.rank for s in rows}
    by_key = {s.key: s for s in rows}
    old_order = sorted(
        (s for s in rows if s.kind == OPEN), key=lambda s: (s.position, not s.active, s.id)
    )
    new_position: dict[str, int] = {}
    for position, spec in enumerate(specs, 1):
        new_position[spec.key] = position
        stage = by_key.get(spec.key)
        if stage is None:
            stage = Stage(team_id=team_id, key=spec.key, kind=OPEN)
            session.add(stage)
            by_key[spec.key] = stage
        stage.name_en = spec.name_en
        stage.name_zh = spec.name_zh
        stage.stall_days = spec.stall_days
        stage.probability = spec.probability
        stage.position = position
        stage.active = True
    session.flush()
    for spec in specs:
        _sync_criteria(session, team_id, by_key[spec.key], spec.exit_criteria)

    if result.moves:
        assert move_to is not None
        target = by_key[move_to]
        leaving_ids = [by_key[key].id for key in result.moves]
        deals = session.scalars(
            sa.select(Deal)
            .where(Deal.stage_id.in_(leaving_ids), Deal.status == OPEN)
            .order_by(Deal.number)
        ).all()
        try:
            for deal in deals:
                domain._change_stage(session, deal, target, actor, now)
        except StaleDataError:
            raise UserError("stages.concurrent_change") from None

    anchor = 0
    for stage in old_order:
        if stage.key in new_position:
            anchor = new_position[stage.key]
        else:
            stage.active = False
            stage.position = anchor
    session.flush()
    if any(stage.rank != ranks_before[stage.id] for stage in rows):
        domain.refresh_furthest_stages(session, team_id)
    for stage in by_key.values():
        session.expire(stage, ["criteria"])
    return result


# --- describing a plan ----------------------------------------------------------------


def describe(plan: StagePlan, tr: Callable[..., str], lang: str = "en") -> list[str]:
    """The plan as lines of text in the reader's language (`tr` is a Translator)."""
    if plan.empty:
        return [tr("stages.plan_none")]

    def name(key: str) -> str:
        en, zh = plan.names.get(key, (key, key))
        return zh if lang.startswith("zh") else en

    def value(v: object) -> str:
        if v is None:
            return tr("stages.never")
        if isinstance(v, Decimal):
            return str(_number(v))
        return str(v)

    lines: list[str] = []
    for key in plan.added:
        code = "stages.plan_reactivated" if key in plan.reactivated else "stages.plan_added"
        lines.append(tr(code, stage=key, name=name(key), position=plan.order.index(key) + 1))
    for key in plan.removed:
        lines.append(tr("stages.plan_removed", stage=key))
    for change in plan.field_changes:
        code = "stages.plan_renamed" if change.field == "name" else "stages.plan_changed"
        lines.append(
            tr(
                code,
                stage=change.key,
                field=change.field,
                old=value(change.old),
                new=value(change.new),
            )
        )
    if plan.reordered:
        lines.append(tr("stages.plan_reordered", order=" → ".join(plan.order)))
    for key in plan.order:
        for text in plan.criteria_added.get(key, []):
            lines.append(tr("stages.plan_criterion_added", stage=key, text=text))
    for key in plan.order:
        for text in plan.criteria_removed.get(key, []):
            lines.append(tr("stages.plan_criterion_removed", stage=key, text=text))
    for key in plan.criteria_reordered:
        lines.append(tr("stages.plan_criteria_reordered", stage=key))
    for key, count in plan.moves.items():
        if plan.move_to is not None:
            lines.append(tr("stages.plan_move", stage=key, count=count, target=plan.move_to))
        else:
            lines.append(tr("stages.plan_stranded", stage=key, count=count))
    return lines

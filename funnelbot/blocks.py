"""Every message, modal and home view, as pure functions from plain data to Block Kit dicts.

User-typed text (deal names, notes, sources, reasons) only ever goes into `plain_text`
objects: Slack shows it literally there, so `<!channel>`, `*bold*` or a URL never pings,
formats or links. Our own mrkdwn escapes `& < >` as Slack asks.
https://api.slack.com/reference/block-kit/blocks · https://api.slack.com/reference/surfaces/formatting
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from funnelbot.i18n import Translator
from funnelbot.ids import Action, Field, View
from funnelbot.presenters import DealDetail, DealInfo, StageInfo

Block = dict[str, Any]
Message = dict[str, Any]

HEADER_LIMIT = 150
BUTTON_LIMIT = 75
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
MAX_BLOCKS = 50
LIST_PAGE = 20


def escape(text: str) -> str:
    """Slack's three control characters in mrkdwn and message `text`."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plain(text: str, limit: int = SECTION_LIMIT) -> dict[str, Any]:
    return {"type": "plain_text", "text": truncate(text, limit) or " ", "emoji": True}


def mrkdwn(text: str, limit: int = SECTION_LIMIT) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": truncate(text, limit) or " "}


def button(text: str, action: Action, value: str, style: str | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "button",
        "text": plain(text, BUTTON_LIMIT),
        "action_id": action.value,
        "value": value,
    }
    if style:
        element["style"] = style
    return element


def deal_value(number: int, version: int) -> str:
    """Button payload: the deal and the version the button was drawn for."""
    return f"{number}:{version}"


def parse_deal_value(value: str) -> tuple[int, int]:
    number, _, version = value.partition(":")
    return int(number), int(version)


def mention(user_id: str) -> str:
    return f"<@{user_id}>"


def _when(tr: Translator, at: dt.datetime) -> str:
    return tr.date(at.date())


def _title(deal: DealInfo) -> str:
    return f"#{deal.number} {deal.name}"


def _message(text: str, blocks: list[Block]) -> Message:
    """A message with its notification fallback (escaped: it is parsed as mrkdwn)."""
    return {"text": truncate(escape(text), 3000), "blocks": blocks[:MAX_BLOCKS]}


# --- short answers --------------------------------------------------------------------


def notice(text: str) -> Message:
    return _message(text, [{"type": "section", "text": plain(text)}])


def error(text: str) -> Message:
    return _message(text, [{"type": "section", "text": plain(f":warning: {text}")}])


def help_message(tr: Translator, command: str) -> Message:
    body = tr(f"help.{command.lstrip('/')}")
    return _message(
        body.splitlines()[0],
        [
            {"type": "header", "text": plain(tr("help.title", command=command), HEADER_LIMIT)},
            {"type": "section", "text": mrkdwn(body)},
        ],
    )


# --- deals ----------------------------------------------------------------------------


def deal_buttons(deal: DealInfo, tr: Translator) -> Block:
    value = deal_value(deal.number, deal.version)
    if deal.status != "open":
        elements = [button(tr("button.reopen"), Action.REOPEN, value)]
    else:
        elements = []
        if deal.has_next_stage:
            elements.append(button(tr("button.advance"), Action.ADVANCE, value, "primary"))
        elements += [
            button(tr("button.won"), Action.WON, value),
            button(tr("button.lost"), Action.LOST, value, "danger"),
            button(tr("button.note"), Action.NOTE, value),
            button(tr("button.edit"), Action.EDIT, value),
        ]
    return {"type": "actions", "block_id": f"deal-{deal.number}", "elements": elements}


def _field(label: str, value: str) -> dict[str, Any]:
    return mrkdwn(f"*{escape(label)}*\n{value}", FIELD_LIMIT)


def _plain_field(label: str, value: str) -> dict[str, Any]:
    return plain(f"{label}: {value}", FIELD_LIMIT)


def deal_fields(deal: DealInfo, tr: Translator) -> list[dict[str, Any]]:
    fields = [
        _field(tr("field.stage"), escape(deal.stage.name(tr.lang))),
        _field(tr("field.amount"), escape(tr.money(deal.amount))),
        _field(tr("field.owner"), mention(deal.owner_id)),
        _field(tr("field.close"), escape(tr.date(deal.expected_close))),
    ]
    if deal.source:
        fields.append(_plain_field(tr("field.source"), deal.source))
    if deal.next_step:
        due = f" ({tr.date(deal.next_step_due)})" if deal.next_step_due else ""
        fields.append(_plain_field(tr("field.next_step"), deal.next_step + due))
    if deal.lost_reason:
        fields.append(_plain_field(tr("field.lost_reason"), deal.lost_reason))
    return fields[:10]


def deal_card(detail: DealDetail, tr: Translator, *, note: str | None = None) -> Message:
    deal = detail.deal
    blocks: list[Block] = []
    if note:
        blocks.append({"type": "section", "text": plain(note)})
    blocks += [
        {"type": "header", "text": plain(_title(deal), HEADER_LIMIT)},
    ]
    if len(_title(deal)) > HEADER_LIMIT:
        blocks.append({"type": "section", "text": plain(deal.name)})
    status = tr(f"status.{deal.status}")
    blocks += [
        {"type": "section", "fields": deal_fields(deal, tr)},
        {
            "type": "context",
            "elements": [
                mrkdwn(
                    escape(
                        tr(
                            "deal.meta",
                            status=status,
                            created=_when(tr, deal.created_at),
                            activity=_when(tr, deal.last_activity_at),
                        )
                    )
                )
            ],
        },
    ]
    if detail.history:
        lines = []
        for entry in detail.history[-10:]:
            to = escape(entry.to_stage.name(tr.lang))
            if entry.from_stage is None:
                change = tr("history.created", stage=to)
            else:
                change = f"{escape(entry.from_stage.name(tr.lang))} → {to}"
            lines.append(f"• {escape(_when(tr, entry.at))}  {change}  {mention(entry.by)}")
        blocks.append(
            {
                "type": "section",
                "text": mrkdwn(f"*{escape(tr('deal.history'))}*\n" + "\n".join(lines)),
            }
        )
    if detail.confirmations:
        items = [f"✓ {c.text} — {_when(tr, c.at)}" for c in detail.confirmations[-8:]]
        blocks.append(
            {"type": "section", "text": plain(tr("deal.criteria_done") + "\n" + "\n".join(items))}
        )
    if detail.notes:
        blocks.append({"type": "section", "text": mrkdwn(f"*{escape(tr('deal.notes'))}*")})
        for n in detail.notes:
            blocks.append(
                {
                    "type": "context",
                    "elements": [
                        mrkdwn(f"{mention(n.author)} · {escape(_when(tr, n.at))}"),
                        plain(n.text, FIELD_LIMIT),
                    ],
                }
            )
    blocks.append(deal_buttons(deal, tr))
    text = (note + "\n" if note else "") + f"{_title(deal)} — {deal.stage.name(tr.lang)}"
    return _message(text, blocks)


def deal_list(deals: Sequence[DealInfo], total: int, tr: Translator, title: str) -> Message:
    blocks: list[Block] = [{"type": "header", "text": plain(title, HEADER_LIMIT)}]
    if not deals:
        blocks.append({"type": "section", "text": plain(tr("list.empty"))})
        return _message(title, blocks)
    for deal in deals[:LIST_PAGE]:
        summary = f"{_title(deal)}\n{deal.stage.name(tr.lang)} · {tr.money(deal.amount)}"
        blocks.append(
            {
                "type": "section",
                "text": plain(summary),
                "accessory": button(
                    tr("button.show"), Action.SHOW, deal_value(deal.number, deal.version)
                ),
            }
        )
        blocks.append(deal_buttons(deal, tr))
    if total > len(deals):
        blocks.append(
            {"type": "context", "elements": [plain(tr("list.more", shown=len(deals), total=total))]}
        )
    return _message(f"{title} ({total})", blocks)


def candidates(ref: str, options: Sequence[tuple[int, str]], tr: Translator) -> Message:
    text = tr("error.ambiguous_ref", ref=ref, count=len(options))
    return _message(
        text,
        [
            {"type": "section", "text": plain(text)},
            # One block per candidate: Slack refuses a block holding two equal action ids.
            *(
                {
                    "type": "section",
                    "block_id": f"candidate-{number}",
                    "text": plain(f"#{number} {name}"),
                    "accessory": button(tr("button.show"), Action.SHOW, f"{number}:0"),
                }
                for number, name in options[:10]
            ),
        ],
    )


def choose_outcome(number: int, version: int, tr: Translator) -> Message:
    """`advance` at the last open stage: the deal closes only by an explicit choice."""
    text = tr("deal.last_open_stage", number=number)
    value = deal_value(number, version)
    return _message(
        text,
        [
            {"type": "section", "text": plain(text)},
            {
                "type": "actions",
                "elements": [
                    button(tr("button.won"), Action.WON, value, "primary"),
                    button(tr("button.lost"), Action.LOST, value, "danger"),
                ],
            },
        ],
    )


# --- modals ---------------------------------------------------------------------------


def _input(
    field: Field,
    label: str,
    element: dict[str, Any],
    *,
    optional: bool = False,
    hint: str | None = None,
) -> Block:
    element = {**element, "action_id": field.value}
    block: Block = {
        "type": "input",
        "block_id": field.value,
        "label": plain(label, 2000),
        "element": element,
        "optional": optional,
    }
    if hint:
        block["hint"] = plain(hint, 2000)
    return block


def _text_input(
    initial: str | None = None, *, max_length: int = 200, multiline: bool = False
) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "plain_text_input",
        "max_length": max_length,
        "multiline": multiline,
    }
    if initial:
        element["initial_value"] = initial
    return element


def _date_input(initial: dt.date | None) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "datepicker"}
    if initial:
        element["initial_date"] = initial.isoformat()
    return element


def _modal(
    view: View, title: str, submit: str, tr: Translator, blocks: list[Block], meta: dict[str, Any]
) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": view.value,
        "title": plain(title, 24),
        "submit": plain(submit, 24),
        "close": plain(tr("modal.cancel"), 24),
        "private_metadata": json.dumps(meta, separators=(",", ":")),
        "blocks": blocks,
    }


def _stage_option(stage: StageInfo, tr: Translator) -> dict[str, Any]:
    return {"text": plain(stage.name(tr.lang), 75), "value": stage.key}


def new_deal_modal(
    tr: Translator, stages: Sequence[StageInfo], *, owner_id: str, meta: dict[str, Any]
) -> dict[str, Any]:
    options = [_stage_option(s, tr) for s in stages]
    blocks = [
        _input(Field.NAME, tr("field.name"), _text_input(max_length=200)),
        _input(
            Field.AMOUNT,
            tr("field.amount"),
            _text_input(max_length=40),
            optional=True,
            hint=tr("hint.amount"),
        ),
        _input(Field.OWNER, tr("field.owner"), {"type": "users_select", "initial_user": owner_id}),
        _input(
            Field.STAGE,
            tr("field.stage"),
            {"type": "static_select", "options": options, "initial_option": options[0]},
        ),
        _input(Field.SOURCE, tr("field.source"), _text_input(max_length=100), optional=True),
        _input(Field.CLOSE, tr("field.close"), _date_input(None), optional=True),
    ]
    return _modal(View.NEW_DEAL, tr("modal.new_deal"), tr("modal.create"), tr, blocks, meta)


def edit_deal_modal(tr: Translator, deal: DealInfo, *, meta: dict[str, Any]) -> dict[str, Any]:
    amount = format(deal.amount.normalize(), "f") if deal.amount else None
    blocks = [
        _input(Field.NAME, tr("field.name"), _text_input(deal.name, max_length=200)),
        _input(
            Field.AMOUNT,
            tr("field.amount"),
            _text_input(amount, max_length=40),
            optional=True,
            hint=tr("hint.amount"),
        ),
        _input(
            Field.SOURCE,
            tr("field.source"),
            _text_input(deal.source, max_length=100),
            optional=True,
        ),
        _input(Field.CLOSE, tr("field.close"), _date_input(deal.expected_close), optional=True),
        _input(
            Field.NEXT_STEP,
            tr("field.next_step"),
            _text_input(deal.next_step, max_length=2000, multiline=True),
            optional=True,
        ),
        _input(
            Field.NEXT_DUE, tr("field.next_due"), _date_input(deal.next_step_due), optional=True
        ),
    ]
    title = tr("modal.edit_deal", number=deal.number)
    return _modal(View.EDIT_DEAL, title, tr("modal.save"), tr, blocks, meta)


def note_modal(tr: Translator, deal: DealInfo, *, meta: dict[str, Any]) -> dict[str, Any]:
    blocks = [
        {"type": "section", "text": plain(_title(deal))},
        _input(Field.NOTE, tr("field.note"), _text_input(max_length=2000, multiline=True)),
    ]
    return _modal(
        View.NOTE, tr("modal.note", number=deal.number), tr("modal.save"), tr, blocks, meta
    )


def lost_modal(tr: Translator, deal: DealInfo, *, meta: dict[str, Any]) -> dict[str, Any]:
    blocks = [
        {"type": "section", "text": plain(_title(deal))},
        _input(
            Field.REASON,
            tr("field.lost_reason"),
            _text_input(max_length=2000, multiline=True),
            optional=True,
        ),
    ]
    return _modal(
        View.LOST, tr("modal.lost", number=deal.number), tr("modal.mark_lost"), tr, blocks, meta
    )


def criteria_modal(tr: Translator, deal: DealInfo, *, meta: dict[str, Any]) -> dict[str, Any]:
    """The exit checklist (准出标准) of the deal's stage; every box must be ticked."""
    options = [{"text": plain(text, 75), "value": str(cid)} for cid, text in deal.stage.criteria]
    blocks = [
        {"type": "section", "text": plain(tr("criteria.intro", stage=deal.stage.name(tr.lang)))},
        _input(Field.CRITERIA, tr("field.criteria"), {"type": "checkboxes", "options": options}),
    ]
    return _modal(View.CRITERIA, tr("modal.criteria"), tr("modal.confirm"), tr, blocks, meta)


# --- funnel metrics -------------------------------------------------------------------


def share(tr: Translator, num: int, den: int, low: float | None, high: float | None) -> str:
    """`2/3 (67%, 21–94%)`: the count, the rate and its 95 % interval, never a bare percentage."""
    if not den:
        return f"{num}/{den} (—)"
    return f"{num}/{den} ({tr.percent(num / den)}, {tr.percent(low)}–{tr.percent(high)})"


def _stage_name(tr: Translator, name_en: str, name_zh: str) -> str:
    return name_zh if tr.lang == "zh" else name_en


def _days(tr: Translator, value: float | None) -> str:
    return "—" if value is None else tr("metrics.days", days=f"{value:.1f}")


def funnel_summary(
    tr: Translator,
    loads: Sequence[Any],
    conv: Any,
    stalled: int,
    title: str,
) -> Message:
    """`/funnel`: open deals and value per stage, stage conversion, stalled count."""
    bottleneck = conv.bottleneck()
    rows = []
    by_key = {s.key: s for s in conv.stages}
    for load in loads:
        stage = by_key.get(load.key)
        line = f"*{escape(_stage_name(tr, load.name, load.name_zh))}*  {load.deals} · {escape(tr.money(load.amount))}"
        if stage is not None and stage.reached:
            line += "  →  " + share(
                tr, stage.advanced, stage.reached, stage.conversion_low, stage.conversion_high
            )
        if bottleneck is not None and stage is not None and stage.key == bottleneck.key:
            line += "  " + tr("metrics.bottleneck_tag")
        rows.append(line)
    total_deals = sum(load.deals for load in loads)
    total_amount = (
        sum((load.amount for load in loads), start=type(loads[0].amount)(0)) if loads else 0
    )
    blocks: list[Block] = [
        {"type": "header", "text": plain(title, HEADER_LIMIT)},
        {"type": "section", "text": mrkdwn("\n".join(rows) or tr("list.empty"))},
        {
            "type": "context",
            "elements": [
                mrkdwn(
                    escape(
                        tr(
                            "metrics.summary_footer",
                            deals=total_deals,
                            amount=tr.money(total_amount),
                            stalled=stalled,
                            period=conv.period.label(),
                        )
                    )
                )
            ],
        },
    ]
    return _message(f"{title}: {total_deals} · {tr.money(total_amount)}", blocks)


def conversion_table(
    tr: Translator, conv: Any, title: str, path: tuple[str, str, int, int] | None = None
) -> Message:
    """The conversion table: reached → advanced per stage with intervals, win rate, cycle."""
    blocks: list[Block] = [{"type": "header", "text": plain(title, HEADER_LIMIT)}]
    if path is not None:
        a, b, reached_a, reached_b = path
        from_to = tr("metrics.from_to", a=a, b=b)
        low, high = _wilson(reached_b, reached_a)
        blocks.append(
            {
                "type": "section",
                "text": mrkdwn(
                    f"*{escape(from_to)}*  " + share(tr, reached_b, reached_a, low, high)
                ),
            }
        )
    bottleneck = conv.bottleneck()
    for stage in conv.stages:
        name = _stage_name(tr, stage.name, stage.name_zh)
        if bottleneck is not None and stage.key == bottleneck.key:
            name += " " + tr("metrics.bottleneck_tag")
        blocks.append(
            {
                "type": "section",
                "fields": [
                    mrkdwn(
                        f"*{escape(name)}*\n"
                        + share(
                            tr,
                            stage.advanced,
                            stage.reached,
                            stage.conversion_low,
                            stage.conversion_high,
                        )
                    ),
                    mrkdwn(
                        escape(
                            tr(
                                "metrics.stage_detail",
                                open=stage.open,
                                lost=stage.lost,
                                avg=_days(tr, stage.avg_days),
                                median=_days(tr, stage.median_days),
                            )
                        )
                    ),
                ],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                mrkdwn(
                    escape(
                        tr(
                            "metrics.win_line",
                            created=conv.created,
                            rate=share(
                                tr,
                                conv.won,
                                conv.won + conv.lost,
                                conv.win_rate_low,
                                conv.win_rate_high,
                            ),
                            cycle=_days(tr, conv.cycle_days_avg),
                            period=conv.period.label(),
                        )
                    )
                )
            ],
        }
    )
    if conv.created and conv.created < 30:
        blocks.append({"type": "context", "elements": [plain(tr("metrics.small_sample"))]})
    return _message(title, blocks)


def _wilson(successes: int, trials: int) -> tuple[float | None, float | None]:
    from funnelbot.metrics import wilson

    return wilson(successes, trials)


def forecast_message(tr: Translator, fc: Any, title: str) -> Message:
    lines = [
        tr(
            "metrics.forecast_weighted",
            weighted=escape(tr.money(fc.weighted)),
            deals=fc.deals,
            amount=escape(tr.money(fc.amount_open)),
        ),
        tr(
            "metrics.forecast_range",
            p10=escape(tr.money(fc.p10)),
            p50=escape(tr.money(fc.p50)),
            p90=escape(tr.money(fc.p90)),
        ),
    ]
    if fc.undated_deals:
        lines.append(
            tr(
                "metrics.forecast_undated",
                deals=fc.undated_deals,
                amount=escape(tr.money(fc.undated_amount)),
            )
        )
    probs = []
    for s in fc.stages:
        name = escape(_stage_name(tr, s.name, s.name_zh))
        if s.learned:
            text = tr("metrics.p_learned", p=tr.percent(s.p_win), n=s.sample)
            if abs(s.p_win - s.p_win_default) > 0.005:
                text += " " + tr("metrics.p_default_beside", p=tr.percent(s.p_win_default))
        else:
            text = tr("metrics.p_default", p=tr.percent(s.p_win), n=s.sample)
        probs.append(f"*{name}*  {text}")
    blocks: list[Block] = [
        {"type": "header", "text": plain(title, HEADER_LIMIT)},
        {"type": "section", "text": mrkdwn("\n".join(lines))},
        {
            "type": "section",
            "text": mrkdwn(f"*{escape(tr('metrics.p_title'))}*\n" + "\n".join(probs)),
        },
        {
            "type": "context",
            "elements": [
                mrkdwn(
                    escape(
                        tr(
                            "metrics.forecast_footer",
                            period=fc.period.label(),
                            as_of=fc.as_of.isoformat(),
                        )
                    )
                )
            ],
        },
    ]
    return _message(f"{title}: {tr.money(fc.weighted)}", blocks)


def breakdown_message(tr: Translator, rows: Sequence[Any], title: str, by: str) -> Message:
    blocks: list[Block] = [{"type": "header", "text": plain(title, HEADER_LIMIT)}]
    if not rows:
        blocks.append({"type": "section", "text": plain(tr("metrics.nothing"))})
    for row in rows[:40]:
        if by == "owner":
            who = mention(row.key) if row.key else "—"
            head = mrkdwn(f"{who}")
        else:
            head = plain(row.key or tr("metrics.no_source"), FIELD_LIMIT)
        low, high = row.win_interval
        detail = tr(
            "metrics.breakdown_row",
            created=row.created,
            open=row.open,
            open_amount=tr.money(row.open_amount),
            won_amount=tr.money(row.won_amount),
            rate=share(tr, row.won, row.won + row.lost, low, high),
        )
        blocks.append({"type": "section", "fields": [head, mrkdwn(escape(detail))]})
    return _message(title, blocks)


def lost_message(tr: Translator, reasons: Sequence[Any], conv: Any, title: str) -> Message:
    blocks: list[Block] = [{"type": "header", "text": plain(title, HEADER_LIMIT)}]
    if not reasons:
        blocks.append({"type": "section", "text": plain(tr("metrics.nothing"))})
    for r in reasons[:20]:
        blocks.append(
            {
                "type": "section",
                "fields": [
                    plain(r.reason or tr("metrics.no_reason"), FIELD_LIMIT),
                    mrkdwn(
                        escape(tr("metrics.lost_row", deals=r.deals, amount=tr.money(r.amount)))
                    ),
                ],
            }
        )
    by_stage = ", ".join(
        f"{_stage_name(tr, s.name, s.name_zh)} {s.lost}" for s in conv.stages if s.lost
    )
    if by_stage:
        blocks.append(
            {
                "type": "context",
                "elements": [mrkdwn(escape(tr("metrics.lost_by_stage", stages=by_stage)))],
            }
        )
    return _message(title, blocks)


def velocity_message(tr: Translator, vel: Any, title: str) -> Message:
    conv = vel.conversion
    days = "\n".join(
        f"*{escape(_stage_name(tr, s.name, s.name_zh))}*  {escape(_days(tr, s.avg_days))} ({escape(tr('metrics.median'))} {escape(_days(tr, s.median_days))})"
        for s in conv.stages
    )
    lines = [
        tr("metrics.cycle", cycle=escape(_days(tr, conv.cycle_days_avg))),
        tr(
            "metrics.win_rate",
            rate=share(tr, conv.won, conv.won + conv.lost, conv.win_rate_low, conv.win_rate_high),
        ),
        tr(
            "metrics.velocity",
            value=escape(tr.money(vel.per_day)) if vel.per_day is not None else "—",
            open=vel.open_deals,
        ),
    ]
    blocks: list[Block] = [
        {"type": "header", "text": plain(title, HEADER_LIMIT)},
        {"type": "section", "text": mrkdwn(f"*{escape(tr('metrics.days_in_stage'))}*\n{days}")},
        {"type": "section", "text": mrkdwn("\n".join(lines))},
        {"type": "context", "elements": [mrkdwn(escape(conv.period.label()))]},
    ]
    return _message(title, blocks)


def period_help(tr: Translator, value: str) -> Message:
    return error(tr("error.bad_period", value=value))


# --- scheduled messages ---------------------------------------------------------------


def nudge_buttons(deal: DealInfo, tr: Translator) -> Block:
    value = deal_value(deal.number, deal.version)
    elements = []
    if deal.has_next_stage:
        elements.append(button(tr("button.advance"), Action.ADVANCE, value, "primary"))
    elements += [
        button(tr("button.note"), Action.NOTE, value),
        button(tr("button.snooze"), Action.SNOOZE, value),
        button(tr("button.lost"), Action.LOST, value, "danger"),
    ]
    return {"type": "actions", "block_id": f"nudge-{deal.number}", "elements": elements}


NUDGE_LISTED = 15  # deals drawn in one nudge DM (two blocks each, within Slack's 50)


def nudge_dm(tr: Translator, items: Sequence[tuple[DealInfo, str]], total: int) -> Message:
    """The daily DM: a rep's neglected deals, each with Advance / Note / Snooze / Lost."""
    title = tr("nudge.title", count=total)
    blocks: list[Block] = [{"type": "header", "text": plain(title, HEADER_LIMIT)}]
    listed = items[:NUDGE_LISTED]
    for deal, why in listed:
        summary = f"{_title(deal)}\n{deal.stage.name(tr.lang)} · {tr.money(deal.amount)} · {why}"
        blocks.append({"type": "section", "text": plain(summary)})
        blocks.append(nudge_buttons(deal, tr))
    if total > len(listed):
        more = tr("nudge.more", count=total - len(listed))
        blocks.append({"type": "context", "elements": [plain(more)]})
    return _message(title, blocks)


def escalation_dm(tr: Translator, items: Sequence[tuple[DealInfo, str]]) -> Message:
    title = tr("nudge.escalation_title", count=len(items))
    lines = [
        f"• #{d.number} · {mention(d.owner_id)} · {escape(d.stage.name(tr.lang))} · {escape(why)}"
        for d, why in items[:30]
    ]
    names = "\n".join(f"#{d.number} {d.name}" for d, _ in items[:30])
    return _message(
        title,
        [
            {"type": "header", "text": plain(title, HEADER_LIMIT)},
            {"type": "section", "text": mrkdwn("\n".join(lines))},
            {"type": "section", "text": plain(names)},
            {"type": "context", "elements": [plain(tr("nudge.escalation_footer"))]},
        ],
    )


def reminder_dm(tr: Translator, deal: DealInfo, text: str) -> Message:
    title = tr("reminder.title", number=deal.number)
    return _message(
        f"{title} {text}",
        [
            {"type": "section", "text": plain(f"⏰ {title}\n{text}")},
            {
                "type": "context",
                "elements": [plain(f"{_title(deal)} · {deal.stage.name(tr.lang)}")],
            },
            deal_buttons(deal, tr),
        ],
    )


def snooze_modal(
    tr: Translator, deal: DealInfo, default_until: dt.date, *, meta: dict[str, Any]
) -> dict[str, Any]:
    blocks = [
        {"type": "section", "text": plain(_title(deal))},
        _input(Field.UNTIL, tr("field.until"), _date_input(default_until)),
        _input(
            Field.REASON,
            tr("field.snooze_reason"),
            _text_input(max_length=2000, multiline=True),
            optional=True,
        ),
    ]
    return _modal(
        View.SNOOZE, tr("modal.snooze", number=deal.number), tr("modal.save"), tr, blocks, meta
    )


def _delta(tr: Translator, now: float | None, before: float | None) -> str:
    if now is None or before is None:
        return ""
    points = (now - before) * 100
    return " " + tr("report.delta", delta=f"{points:+.0f}")


def weekly_report_message(tr: Translator, report: Any) -> Message:
    """The weekly post: the numbers that matter, in one glance."""
    title = tr("report.title", week=report.iso_week)
    money = tr.money
    numbers = [
        _field(tr("report.new"), f"{report.new_count} · {escape(money(report.new_amount))}"),
        _field(tr("report.won"), f"{report.won_count} · {escape(money(report.won_amount))}"),
        _field(tr("report.lost"), f"{report.lost_count} · {escape(money(report.lost_amount))}"),
        _field(tr("report.stalled"), str(report.stalled)),
    ]
    before = {s.key: s for s in report.previous_conversion.stages}
    lines = []
    for s in report.conversion.stages:
        prev = before.get(s.key)
        lines.append(
            f"*{escape(_stage_name(tr, s.name, s.name_zh))}*  "
            + share(tr, s.advanced, s.reached, s.conversion_low, s.conversion_high)
            + escape(_delta(tr, s.conversion, prev.conversion if prev else None))
        )
    blocks: list[Block] = [
        {"type": "header", "text": plain(title, HEADER_LIMIT)},
        {"type": "section", "fields": numbers},
        {
            "type": "section",
            "text": mrkdwn(f"*{escape(tr('report.conversion'))}*\n" + "\n".join(lines)),
        },
    ]
    if report.bottleneck is not None:
        b = report.bottleneck
        blocks.append(
            {
                "type": "section",
                "text": mrkdwn(
                    escape(
                        tr(
                            "report.bottleneck",
                            stage=_stage_name(tr, b.name, b.name_zh),
                            rate=share(
                                tr, b.advanced, b.reached, b.conversion_low, b.conversion_high
                            ),
                        )
                    )
                ),
            }
        )
    if report.top_of_funnel_warning:
        blocks.append(
            {
                "type": "section",
                "text": mrkdwn(
                    ":warning: "
                    + escape(
                        tr(
                            "report.top_warning",
                            new=report.new_count,
                            avg=f"{report.prior_weeks_avg_new:.1f}",
                        )
                    )
                ),
            }
        )
    fc = report.forecast
    blocks.append(
        {
            "type": "section",
            "text": mrkdwn(
                escape(
                    tr(
                        "report.forecast",
                        weighted=money(fc.weighted),
                        p10=money(fc.p10),
                        p50=money(fc.p50),
                        p90=money(fc.p90),
                        period=fc.period.label(),
                    )
                )
            ),
        }
    )
    blocks.append({"type": "context", "elements": [mrkdwn(escape(report.week.label()))]})
    text = f"{title}: {report.new_count} / {report.won_count} / {report.lost_count}"
    return _message(text, blocks)


def weekly_thread(tr: Translator, report: Any) -> Message:
    """Thread reply: who moved (won, lost, big advances) and whose close date slipped."""

    def section(key: str, movers: Sequence[Any]) -> list[Block]:
        if not movers:
            return []
        body = "\n".join(
            f"#{m.number} {m.name} · {tr.money(m.amount)} · {m.detail}" for m in movers
        )
        return [
            {"type": "section", "text": mrkdwn(f"*{escape(tr(key))}*")},
            {"type": "section", "text": plain(body)},
        ]

    blocks = (
        section("report.movers_won", report.won)
        + section("report.movers_lost", report.lost)
        + section("report.movers_advanced", report.advances)
        + section("report.movers_slipped", report.slipped)
    )
    if not blocks:
        blocks = [{"type": "section", "text": plain(tr("report.no_movers"))}]
    return _message(tr("report.movers_title"), blocks)


# --- settings and App Home ------------------------------------------------------------

WEEKDAY_KEYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _select(options: Sequence[tuple[str, str]], initial: str | None) -> dict[str, Any]:
    opts = [{"text": plain(label, 75), "value": value} for value, label in options]
    element: dict[str, Any] = {"type": "static_select", "options": opts}
    chosen = next((o for o in opts if o["value"] == initial), None)
    if chosen:
        element["initial_option"] = chosen
    return element


def settings_modal(tr: Translator, config: Any, *, meta: dict[str, Any]) -> dict[str, Any]:
    """`/funnel settings` (admins): stored in the database, winning over the environment."""
    channel: dict[str, Any] = {
        "type": "conversations_select",
        "filter": {"include": ["public", "private"], "exclude_bot_users": True},
    }
    if config.report_channel:
        channel["initial_conversation"] = config.report_channel
    managers: dict[str, Any] = {"type": "multi_users_select"}
    if config.managers:
        managers["initial_users"] = sorted(config.managers)
    blocks = [
        _input(Field.REPORT_CHANNEL, tr("settings.report_channel"), channel, optional=True),
        _input(
            Field.WEEKLY_DAY,
            tr("settings.weekly_day"),
            _select([(d, tr(f"weekday.{d}")) for d in WEEKDAY_KEYS], config.weekly_day),
        ),
        _input(
            Field.WEEKLY_TIME,
            tr("settings.weekly_time"),
            {"type": "timepicker", "initial_time": config.weekly_time},
        ),
        _input(
            Field.NUDGE_HOUR,
            tr("settings.nudge_hour"),
            _select([(str(h), f"{h:02d}:00") for h in range(24)], str(config.nudge_hour)),
            hint=tr("settings.nudge_hint"),
        ),
        _input(
            Field.TIMEZONE,
            tr("settings.timezone"),
            _text_input(config.timezone, max_length=64),
            hint="Asia/Shanghai, Europe/Berlin, UTC",
        ),
        _input(
            Field.LANGUAGE,
            tr("settings.language"),
            _select([("en", "English"), ("zh", "简体中文")], config.language),
            hint=tr("settings.language_hint"),
        ),
        _input(
            Field.CURRENCY,
            tr("settings.currency"),
            _text_input(config.currency, max_length=3),
            hint="USD, CNY, EUR",
        ),
        _input(Field.MANAGERS, tr("settings.managers"), managers, optional=True),
        _input(
            Field.MANAGER_GROUP,
            tr("settings.manager_group"),
            _text_input(config.manager_group, max_length=20),
            optional=True,
            hint=tr("settings.manager_group_hint"),
        ),
    ]
    return _modal(View.SETTINGS, tr("settings.title"), tr("modal.save"), tr, blocks, meta)


HOME_BLOCKS = 100  # Slack's limit for a Home tab


def home_view(
    tr: Translator,
    *,
    attention: Sequence[tuple[DealInfo, str]],
    by_stage: Sequence[tuple[str, str, Sequence[DealInfo], int]],
    team: dict[str, Any] | None,
) -> dict[str, Any]:
    """App Home: what needs me first, then my open deals by stage; managers also see the team.

    `by_stage` holds (stage key, stage name, the deals to list, how many the viewer has in
    that stage). Each heading counts every deal; when they do not all fit in Slack's 100
    blocks, each stage lists its share and says how to see the rest.
    """
    blocks: list[Block] = [{"type": "header", "text": plain(tr("home.title"), HEADER_LIMIT)}]
    if attention:
        blocks.append({"type": "section", "text": mrkdwn(f"*{escape(tr('home.attention'))}*")})
        for deal, why in attention[:8]:
            blocks.append(
                {
                    "type": "section",
                    "text": plain(f"{_title(deal)}\n{deal.stage.name(tr.lang)} · {why}"),
                }
            )
            blocks.append(deal_buttons(deal, tr) | {"block_id": f"home-attention-{deal.number}"})
    tail: list[Block] = []
    if team:
        tail.append({"type": "divider"})
        tail.append({"type": "header", "text": plain(tr("home.team"), HEADER_LIMIT)})
        tail.append({"type": "section", "text": mrkdwn(team["funnel"])})
        if team.get("report_link"):
            tail.append(
                {
                    "type": "section",
                    "text": mrkdwn(f"<{team['report_link']}|{escape(tr('home.latest_report'))}>"),
                }
            )
    stages = [(key, name, deals, total) for key, name, deals, total in by_stage if total]
    if not stages:
        blocks.append({"type": "section", "text": plain(tr("home.empty"))})
    # Room for the stages: each takes a divider, a heading and maybe a "more" line, plus
    # one line at the end if some stages do not fit at all.
    room = HOME_BLOCKS - len(blocks) - len(tail)
    fitting = stages
    while fitting and 3 * len(fitting) + (len(fitting) < len(stages)) > room:
        fitting = fitting[:-1]
    room -= 3 * len(fitting) + (len(fitting) < len(stages))
    # Deals shared out stage by stage, one at a time, so every stage shows some.
    shown = [0] * len(fitting)
    while room > 0:
        grew = False
        for i, (_, _, deals, _) in enumerate(fitting):
            if room > 0 and shown[i] < len(deals):
                shown[i] += 1
                room -= 1
                grew = True
        if not grew:
            break
    for (key, name, deals, total), count in zip(fitting, shown, strict=True):
        blocks.append({"type": "divider"})
        blocks.append({"type": "section", "text": mrkdwn(f"*{escape(name)}* ({total})")})
        for deal in deals[:count]:
            blocks.append(
                {
                    "type": "section",
                    "text": plain(f"{_title(deal)} · {tr.money(deal.amount)}"),
                    "accessory": button(
                        tr("button.show"), Action.SHOW, deal_value(deal.number, deal.version)
                    ),
                }
            )
        if count < total:
            more = tr("home.more", count=total - count, stage=key)
            blocks.append({"type": "context", "elements": [plain(more)]})
    if len(fitting) < len(stages):
        rest = sum(total for _, _, _, total in stages[len(fitting) :])
        blocks.append({"type": "context", "elements": [plain(tr("home.more_stages", count=rest))]})
    blocks += tail
    return {"type": "home", "blocks": blocks[:HOME_BLOCKS]}


def stages_modal(tr: Translator, specs: Sequence[Any], *, meta: dict[str, Any]) -> dict[str, Any]:
    """`/funnel stages`: every open stage editable in place, one new stage, removal with
    a destination for the deals it holds. Block ids are `s<i>_<field>` and `new_<field>`."""

    def number(
        value: Any, *, decimal: bool, minimum: str, maximum: str | None = None
    ) -> dict[str, Any]:
        element: dict[str, Any] = {
            "type": "number_input",
            "is_decimal_allowed": decimal,
            "min_value": minimum,
        }
        if maximum is not None:
            element["max_value"] = maximum
        if value is not None:
            element["initial_value"] = str(value)
        return element

    def block(
        block_id: str,
        label: str,
        element: dict[str, Any],
        *,
        optional: bool = False,
        hint: str | None = None,
    ) -> Block:
        b: Block = {
            "type": "input",
            "block_id": block_id,
            "label": plain(label, 2000),
            "element": {**element, "action_id": block_id},
            "optional": optional,
        }
        if hint:
            b["hint"] = plain(hint, 2000)
        return b

    def stage_inputs(prefix: str, spec: Any | None, position: int) -> list[Block]:
        criteria = "\n".join(spec.exit_criteria) if spec is not None else None
        return [
            block(
                f"{prefix}_name_en",
                tr("stages.name_en"),
                _text_input(spec.name_en if spec else None, max_length=80),
                optional=spec is None,
            ),
            block(
                f"{prefix}_name_zh",
                tr("stages.name_zh"),
                _text_input(spec.name_zh if spec else None, max_length=80),
                optional=spec is None,
            ),
            block(
                f"{prefix}_stall",
                tr("stages.stall_days"),
                number(spec.stall_days if spec else None, decimal=False, minimum="1"),
                optional=True,
            ),
            block(
                f"{prefix}_prob",
                tr("stages.probability"),
                number(spec.probability if spec else None, decimal=True, minimum="0", maximum="1"),
                optional=spec is None,
            ),
            block(
                f"{prefix}_pos",
                tr("stages.position"),
                number(position, decimal=False, minimum="1"),
                optional=spec is None,
            ),
            block(
                f"{prefix}_criteria",
                tr("stages.criteria"),
                _text_input(criteria, max_length=3000, multiline=True),
                optional=True,
                hint=tr("stages.criteria_hint"),
            ),
        ]

    blocks: list[Block] = [{"type": "context", "elements": [plain(tr("stages.intro"))]}]
    for i, spec in enumerate(specs):
        blocks.append(
            {
                "type": "header",
                "text": plain(
                    f"{i + 1}. {spec.name_en} · {spec.name_zh} ({spec.key})", HEADER_LIMIT
                ),
            }
        )
        blocks += stage_inputs(f"s{i}", spec, i + 1)
        blocks.append(
            block(
                f"s{i}_remove",
                tr("stages.remove"),
                {
                    "type": "checkboxes",
                    "options": [{"text": plain(tr("stages.remove_option"), 75), "value": "remove"}],
                },
                optional=True,
            )
        )
    blocks.append({"type": "header", "text": plain(tr("stages.new_header"), HEADER_LIMIT)})
    blocks.append(
        block(
            "new_key",
            tr("stages.new_key"),
            _text_input(None, max_length=40),
            optional=True,
            hint=tr("stages.new_key_hint"),
        )
    )
    blocks += stage_inputs("new", None, len(specs) + 1)
    blocks.append(
        block(
            "move_to",
            tr("stages.move_to"),
            _select([(s.key, f"{s.name_en} · {s.name_zh}") for s in specs], None),
            optional=True,
            hint=tr("stages.move_to_hint"),
        )
    )
    return _modal(View.STAGES, tr("stages.title"), tr("modal.save"), tr, blocks[:100], meta)

"""The pure Block Kit → terminal text renderer of the console (funnelbot.console_render)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from funnelbot import blocks
from funnelbot import console_render as cr
from funnelbot.i18n import translator


def test_mrkdwn_is_lightly_converted() -> None:
    text = "*Bold* and _it_ and ~gone~ for <@U123> in <#C9|sales>: 1 &lt; 2 &amp; 3 &gt; 0 <!here>"
    assert cr.mrkdwn_to_text(text) == (
        "Bold and it and gone for @U123 in #sales: 1 < 2 & 3 > 0 @here"
    )


def test_links_emoji_and_code() -> None:
    assert cr.mrkdwn_to_text("<https://example.com|the docs>") == "the docs (https://example.com)"
    assert cr.mrkdwn_to_text("<https://example.com>") == "https://example.com"
    assert cr.mrkdwn_to_text("<mailto:a@b.co|mail me>") == "mail me"
    assert cr.mrkdwn_to_text(":warning: careful :nope:") == "⚠ careful :nope:"
    # Code spans stay literal: no bold, but entities are unescaped.
    assert cr.mrkdwn_to_text("`*x* &lt;y&gt;`") == "*x* <y>"


def test_escaped_entities_are_unescaped_once() -> None:
    assert cr.mrkdwn_to_text("&amp;lt;") == "&lt;"


def test_ansi_styles_only_with_color() -> None:
    plain = cr.render_blocks([{"type": "header", "text": {"type": "plain_text", "text": "Hi"}}])
    assert plain.text == "Hi\n══"
    colored = cr.render_blocks(
        [{"type": "header", "text": {"type": "plain_text", "text": "Hi"}}], color=True
    )
    assert colored.text == f"{cr.BOLD}{cr.UNDERLINE}Hi{cr.RESET}"
    assert cr.mrkdwn_to_text("*b*", color=True) == f"{cr.BOLD}b{cr.RESET}"


def test_sections_fields_context_divider_image() -> None:
    rendered = cr.render_blocks(
        [
            {"type": "section", "text": {"type": "mrkdwn", "text": "*Stage* moved"}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": "*Stage*\nLead"},
                    {"type": "mrkdwn", "text": "*Amount*\n$5,000"},
                    {"type": "plain_text", "text": "Source: Web"},
                ],
            },
            {"type": "divider"},
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": "by <@U1>"},
                    {"type": "image", "image_url": "https://x/y.png", "alt_text": "avatar"},
                ],
            },
            {
                "type": "image",
                "image_url": "file:///tmp/funnel.png",
                "alt_text": "Sales funnel",
                "title": {"type": "plain_text", "text": "This week"},
            },
        ],
        width=40,
    )
    lines = rendered.text.splitlines()
    assert lines[0] == "Stage moved"
    assert lines[1].startswith("Stage") and lines[1].rstrip().endswith("Amount")
    assert lines[2].startswith("Lead") and lines[2].endswith("$5,000")
    # Both columns start at the same place.
    assert lines[1].index("Amount") == lines[2].index("$5,000")
    assert lines[3] == "Source: Web"
    assert lines[4] == "─" * 40
    assert lines[5] == "by @U1  [avatar]"
    assert lines[6] == "[image: This week — Sales funnel] /tmp/funnel.png"
    assert rendered.controls == []


def test_actions_and_accessories_are_numbered_in_order() -> None:
    rendered = cr.render_blocks(
        [
            {
                "type": "section",
                "block_id": "s1",
                "text": {"type": "plain_text", "text": "#1 Acme"},
                "accessory": {
                    "type": "button",
                    "action_id": "show",
                    "value": "1:1",
                    "text": {"type": "plain_text", "text": "Show"},
                },
            },
            {
                "type": "actions",
                "block_id": "a1",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "adv",
                        "text": {"type": "plain_text", "text": "Advance ▸"},
                        "style": "primary",
                    },
                    {
                        "type": "button",
                        "action_id": "won",
                        "text": {"type": "plain_text", "text": "Won"},
                    },
                    {
                        "type": "static_select",
                        "action_id": "pick",
                        "placeholder": {"type": "plain_text", "text": "Stage"},
                        "options": [
                            {"text": {"type": "plain_text", "text": "Lead"}, "value": "lead"}
                        ],
                    },
                ],
            },
        ]
    )
    assert rendered.text.splitlines() == [
        "#1 Acme",
        "  [1 Show]",
        "[2 Advance ▸] [3 Won] [4 ▾ Stage]",
    ]
    assert [(c.number, c.block_id, c.element["action_id"]) for c in rendered.controls] == [
        (1, "s1", "show"),
        (2, "a1", "adv"),
        (3, "a1", "won"),
        (4, "a1", "pick"),
    ]
    assert rendered.control(3) is not None and rendered.control(3).label == "Won"
    assert rendered.control(9) is None


def test_buttons_wrap_to_the_width() -> None:
    elements = [
        {"type": "button", "action_id": f"b{i}", "text": {"type": "plain_text", "text": "Button"}}
        for i in range(8)
    ]
    rendered = cr.render_blocks([{"type": "actions", "elements": elements}], width=40)
    assert all(cr.display_width(line) <= 40 for line in rendered.text.splitlines())
    assert len(rendered.text.splitlines()) > 1
    assert len(rendered.controls) == 8


def test_wide_characters_count_double() -> None:
    assert cr.display_width("商机漏斗") == 8
    assert cr.display_width("ab") == 2
    lines = cr.wrap("商机漏斗商机漏斗", 6)
    assert lines == ["商机漏", "斗商机", "漏斗"]
    header = cr.render_blocks([{"type": "header", "text": {"type": "plain_text", "text": "商机"}}])
    assert header.text == "商机\n════"


def test_message_without_blocks_uses_its_text() -> None:
    rendered = cr.render_message({"text": "Hello *there* <@U1>"})
    assert rendered.text == "Hello there @U1"


def test_view_shows_title_and_inputs() -> None:
    view = {
        "type": "modal",
        "title": {"type": "plain_text", "text": "New deal"},
        "blocks": [
            {
                "type": "input",
                "block_id": "name",
                "label": {"type": "plain_text", "text": "Deal name"},
                "element": {"type": "plain_text_input", "initial_value": "Acme"},
            },
            {
                "type": "input",
                "block_id": "amount",
                "optional": True,
                "label": {"type": "plain_text", "text": "Amount"},
                "element": {"type": "plain_text_input"},
            },
        ],
    }
    assert cr.render_view(view).text == "【New deal】\nDeal name: Acme\nAmount (optional): …"


def test_a_real_deal_card() -> None:
    """The product's own card: header, fields, history, numbered buttons."""
    from funnelbot.presenters import DealDetail, DealInfo, HistoryEntry, StageInfo

    tr = translator("en", "USD")
    lead = StageInfo(key="lead", name_en="Lead", name_zh="线索", kind="open", position=1)
    at = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
    info = DealInfo(
        number=7,
        version=1,
        name="Acme <b>",
        amount=Decimal("5000"),
        owner_id="U1",
        stage=lead,
        status="open",
        source=None,
        expected_close=None,
        next_step=None,
        next_step_due=None,
        lost_reason=None,
        created_at=at,
        last_activity_at=at,
    )
    detail = DealDetail(
        deal=info, history=(HistoryEntry(None, lead, at, "U1"),), notes=(), confirmations=()
    )
    rendered = cr.render_message(blocks.deal_card(detail, tr, note="Created deal #7."))
    text = rendered.text
    assert "Created deal #7." in text
    assert "#7 Acme <b>" in text  # plain_text is shown literally
    assert "@U1" in text and "$5,000" in text
    assert "[1 Advance ▸] [2 Won] [3 Lost] [4 Note] [5 Edit]" in text
    assert rendered.control(1).element["action_id"] == "deal_advance"

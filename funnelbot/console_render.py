"""Block Kit as terminal text, for the local console (`funnelbot shell`).

Pure functions: a message, a modal or a Home view in, text and its numbered controls out.
Nothing here talks to Slack, the database or a terminal; `color=True` only adds ANSI
escapes (bold header, dim context, coloured button styles).

Layout (https://api.slack.com/reference/block-kit/blocks):
- header: bold and underlined;
- section: its text, its fields in two columns, an accessory after the text;
- context: dim, elements joined with two spaces; divider: a rule;
- image: `[image: title — alt text] <url or local path>`;
- actions: `[1 Advance ▸] [2 Won] …`; section accessories are numbered in the same row
  of numbers, so `:click N` means one thing per message;
- input (when a view is only shown): `Label: value`.
mrkdwn is lightly converted: `*b*` → b, `_i_` → i, `~s~` → s, `<@U1>` → @U1,
`<#C1|sales>` → #sales, `<!here>` → @here, `<https://x|label>` → label (https://x),
`&lt; &gt; &amp;` → `< > &`, and a few emoji codes (`:warning:` → ⚠).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

BOLD, DIM, UNDERLINE, RESET = "\x1b[1m", "\x1b[2m", "\x1b[4m", "\x1b[0m"
GREEN, RED = "\x1b[32m", "\x1b[31m"
DEFAULT_WIDTH = 80

EMOJI = {
    "warning": "⚠",
    "white_check_mark": "✅",
    "heavy_check_mark": "✔",
    "x": "✖",
    "tada": "🎉",
    "trophy": "🏆",
    "chart_with_upwards_trend": "📈",
    "chart_with_downwards_trend": "📉",
    "bar_chart": "📊",
    "hourglass": "⌛",
    "hourglass_flowing_sand": "⏳",
    "alarm_clock": "⏰",
    "bell": "🔔",
    "memo": "📝",
    "calendar": "📅",
    "date": "📅",
    "moneybag": "💰",
    "money_with_wings": "💸",
    "fire": "🔥",
    "eyes": "👀",
    "zzz": "💤",
    "rocket": "🚀",
    "point_right": "👉",
    "information_source": "ℹ",
    "bulb": "💡",
    "red_circle": "🔴",
    "large_green_circle": "🟢",
    "large_yellow_circle": "🟡",
    "arrow_right": "→",
    "arrow_forward": "▶",
    "heavy_plus_sign": "➕",
    "wave": "👋",
    "sparkles": "✨",
}

# Elements a person can press or pick from in a message or on the Home tab.
INTERACTIVE = frozenset(
    {
        "button",
        "overflow",
        "static_select",
        "external_select",
        "users_select",
        "conversations_select",
        "channels_select",
        "multi_static_select",
        "multi_users_select",
        "multi_conversations_select",
        "multi_channels_select",
        "datepicker",
        "timepicker",
        "datetimepicker",
        "checkboxes",
        "radio_buttons",
    }
)


@dataclass(frozen=True)
class Control:
    """A numbered interactive element: what `:click N` presses."""

    number: int
    block_id: str | None
    element: dict[str, Any]

    @property
    def label(self) -> str:
        return element_label(self.element)


@dataclass
class Rendered:
    text: str
    controls: list[Control] = field(default_factory=list)

    def control(self, number: int) -> Control | None:
        return next((c for c in self.controls if c.number == number), None)


# --- text ------------------------------------------------------------------------------


def display_width(text: str) -> int:
    """Terminal columns: East Asian wide characters take two, combining marks none."""
    width = 0
    for ch in strip_ansi(text):
        if unicodedata.combining(ch) or ch in "\u200b\u200d\ufe0f":
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def pad(text: str, width: int) -> str:
    return text + " " * max(0, width - display_width(text))


def wrap(text: str, width: int) -> list[str]:
    """Wrap one paragraph to `width` columns (CJK-aware; long words are cut)."""
    if width <= 0 or display_width(text) <= width:
        return [text]
    lines: list[str] = []
    line = ""
    for word in re.split(r"(\s+)", text):
        if not word:
            continue
        candidate = line + word
        if display_width(candidate) <= width:
            line = candidate
            continue
        if line.strip():
            lines.append(line.rstrip())
            line = ""
        word = word.lstrip() if not line else word
        while display_width(word) > width:  # a word longer than a line: cut it
            cut, used = "", 0
            for ch in word:
                w = display_width(ch)
                if used + w > width:
                    break
                cut, used = cut + ch, used + w
            lines.append(cut)
            word = word[len(cut) :]
        line = word
    if line.strip():
        lines.append(line.rstrip())
    return lines or [""]


def wrap_lines(text: str, width: int) -> list[str]:
    out: list[str] = []
    for paragraph in text.split("\n"):
        out.extend(wrap(paragraph, width))
    return out


def unescape(text: str) -> str:
    """Slack's three escapes, in one pass (`&amp;lt;` stays `&lt;`)."""
    return re.sub(r"&(amp|lt|gt);", lambda m: {"amp": "&", "lt": "<", "gt": ">"}[m.group(1)], text)


_LINK = re.compile(r"<([^<>]*)>")
_EMOJI_CODE = re.compile(r":([a-z0-9_+\-]+):")


def _link(body: str) -> str:
    target, _, label = body.partition("|")
    if target.startswith("@"):
        return "@" + target[1:]  # the id, which is what `:as` and commands take
    if target.startswith("#"):
        return "#" + (label or target[1:])
    if target.startswith("!subteam^"):
        return label or "@" + target[len("!subteam^") :]
    if target.startswith("!date^"):
        parts = target.split("^")
        return label or (parts[1] if len(parts) > 1 else target)
    if target.startswith("!"):
        return "@" + target[1:]
    if target.startswith("mailto:"):
        return label or target[len("mailto:") :]
    return f"{label} ({target})" if label and label != target else target


def _emphasis(text: str, marker: str, on: str, color: bool) -> str:
    m = re.escape(marker)
    pattern = re.compile(rf"(?<![\w{m}]){m}(?=\S)([^{m}\n]*?\S){m}(?![\w{m}])")
    return pattern.sub(lambda x: f"{on}{x.group(1)}{RESET}" if color else x.group(1), text)


def mrkdwn_to_text(text: str, *, color: bool = False) -> str:
    """Slack mrkdwn as readable terminal text (see the module docstring)."""
    # Code spans are shown literally; convert everything else around them.
    parts = re.split(r"(```.*?```|`[^`\n]+`)", text, flags=re.DOTALL)
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 1:
            out.append(unescape(part.strip("`")))
            continue
        part = _LINK.sub(lambda m: _link(m.group(1)), part)
        part = _emphasis(part, "*", BOLD, color)
        part = _emphasis(part, "_", "\x1b[3m", color)
        part = _emphasis(part, "~", "\x1b[9m", color)
        part = _EMOJI_CODE.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), part)
        out.append(unescape(part))
    return "".join(out)


def text_of(obj: Any, *, color: bool = False) -> str:
    """A text object (plain_text or mrkdwn) as terminal text."""
    if obj is None:
        return ""
    if isinstance(obj, str):
        return obj
    text = str(obj.get("text") or "")
    if obj.get("type") == "mrkdwn":
        return mrkdwn_to_text(text, color=color)
    if obj.get("emoji", True):
        text = _EMOJI_CODE.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), text)
    return text


def _style(text: str, *codes: str, color: bool) -> str:
    return "".join(codes) + text + RESET if color and text else text


# --- elements ----------------------------------------------------------------------------


def option_text(option: Mapping[str, Any]) -> str:
    return text_of(option.get("text"))


def element_label(element: Mapping[str, Any]) -> str:
    """What a person sees on an interactive element."""
    kind = element.get("type")
    if kind == "button":
        return text_of(element.get("text"))
    if kind == "overflow":
        return "⋯"
    if kind == "datepicker":
        return "📅 " + (
            element.get("initial_date") or text_of(element.get("placeholder")) or "date"
        )
    if kind == "timepicker":
        return "🕒 " + (
            element.get("initial_time") or text_of(element.get("placeholder")) or "time"
        )
    if kind in ("checkboxes", "radio_buttons"):
        return ", ".join(option_text(o) for o in element.get("options") or [])
    initial = element.get("initial_option")
    if initial:
        return "▾ " + option_text(initial)
    for key in ("initial_user", "initial_conversation", "initial_channel"):
        if element.get(key):
            prefix = "@" if key == "initial_user" else "#"
            return "▾ " + prefix + str(element[key])
    placeholder = text_of(element.get("placeholder")) or "choose"
    return "▾ " + placeholder


def _control_text(control: Control, *, color: bool) -> str:
    element = control.element
    label = f"[{control.number} {control.label}]"
    style = element.get("style")
    if style == "primary":
        return _style(label, GREEN, color=color)
    if style == "danger":
        return _style(label, RED, color=color)
    return label


def _flow(items: Sequence[str], width: int, indent: str = "") -> list[str]:
    """Lay items out left to right, wrapping before `width`."""
    lines: list[str] = []
    line = indent
    for item in items:
        if line.strip() and display_width(line + " " + item) > width:
            lines.append(line)
            line = indent
        line = line + (" " if line.strip() else "") + item
    if line.strip():
        lines.append(line)
    return lines


# --- blocks ------------------------------------------------------------------------------


class _Renderer:
    def __init__(self, width: int, color: bool, start: int) -> None:
        self.width = max(20, width)
        self.color = color
        self.next_number = start
        self.controls: list[Control] = []
        self.lines: list[str] = []

    def control(self, block_id: str | None, element: dict[str, Any]) -> Control:
        ctl = Control(self.next_number, block_id, element)
        self.next_number += 1
        self.controls.append(ctl)
        return ctl

    def emit(self, text: str) -> None:
        self.lines.extend(wrap_lines(text, self.width))

    def block(self, block: Mapping[str, Any]) -> None:
        kind = block.get("type")
        method = getattr(self, f"_{kind}", None)
        if method is None:
            text = text_of(block.get("text"), color=self.color) if block.get("text") else ""
            self.emit(text or f"[{kind} block]")
            return
        method(block)

    def _header(self, block: Mapping[str, Any]) -> None:
        text = text_of(block.get("text"))
        if self.color:
            for line in wrap_lines(text, self.width):
                self.lines.append(f"{BOLD}{UNDERLINE}{line}{RESET}")
        else:
            wrapped = wrap_lines(text, self.width)
            self.lines.extend(wrapped)
            self.lines.append("═" * min(self.width, max(display_width(w) for w in wrapped)))

    def _section(self, block: Mapping[str, Any]) -> None:
        if block.get("text"):
            self.emit(text_of(block["text"], color=self.color))
        fields = block.get("fields") or []
        if fields:
            self._fields([text_of(f, color=self.color) for f in fields])
        accessory = block.get("accessory")
        if accessory:
            self._accessory(block.get("block_id"), accessory)

    def _fields(self, fields: Sequence[str]) -> None:
        gap = 3
        col = (self.width - gap) // 2
        for i in range(0, len(fields), 2):
            left = wrap_lines(fields[i], col)
            right = wrap_lines(fields[i + 1], col) if i + 1 < len(fields) else []
            for j in range(max(len(left), len(right))):
                a = left[j] if j < len(left) else ""
                b = right[j] if j < len(right) else ""
                self.lines.append((pad(a, col + gap) + b).rstrip() if b else a)

    def _accessory(self, block_id: str | None, element: dict[str, Any]) -> None:
        kind = element.get("type")
        if kind == "image":
            self.lines.append("  " + self._image_text(element))
        elif kind in INTERACTIVE:
            ctl = self.control(block_id, element)
            self.lines.append("  " + _control_text(ctl, color=self.color))
            self._options_hint(element)

    def _options_hint(self, element: Mapping[str, Any]) -> None:
        if element.get("type") in ("checkboxes", "radio_buttons"):
            return
        options = element.get("options") or []
        if element.get("type") == "overflow" and options:
            names = " / ".join(option_text(o) for o in options)
            self.lines.append(_style(f"    ({names})", DIM, color=self.color))

    def _context(self, block: Mapping[str, Any]) -> None:
        parts = []
        for el in block.get("elements") or []:
            if el.get("type") == "image":
                parts.append(f"[{el.get('alt_text') or 'image'}]")
            else:
                parts.append(text_of(el))
        for line in wrap_lines("  ".join(p for p in parts if p), self.width):
            self.lines.append(_style(line, DIM, color=self.color))

    def _divider(self, block: Mapping[str, Any]) -> None:
        self.lines.append("─" * self.width)

    def _image_text(self, element: Mapping[str, Any]) -> str:
        title = text_of(element.get("title")) if element.get("title") else ""
        alt = element.get("alt_text") or ""
        label = " — ".join(p for p in (title, alt) if p) or "image"
        where = element.get("image_url") or ""
        slack_file = element.get("slack_file") or {}
        where = where or slack_file.get("url") or slack_file.get("id") or ""
        if where.startswith("file://"):
            where = where[len("file://") :]
        return f"[image: {label}]" + (f" {where}" if where else "")

    def _image(self, block: Mapping[str, Any]) -> None:
        self.lines.append(self._image_text(block))  # a path or URL is never wrapped

    def _actions(self, block: Mapping[str, Any]) -> None:
        items = []
        for element in block.get("elements") or []:
            if element.get("type") in INTERACTIVE:
                ctl = self.control(block.get("block_id"), element)
                items.append(_control_text(ctl, color=self.color))
            else:
                items.append(f"[{element.get('type')}]")
        self.lines.extend(_flow(items, self.width))

    def _input(self, block: Mapping[str, Any]) -> None:
        label = text_of(block.get("label"))
        element = block.get("element") or {}
        value = (
            element.get("initial_value")
            or element.get("initial_date")
            or element.get("initial_user")
            or (option_text(element["initial_option"]) if element.get("initial_option") else "")
        )
        optional = " (optional)" if block.get("optional") else ""
        self.emit(f"{label}{optional}: {value or '…'}")

    def _file(self, block: Mapping[str, Any]) -> None:
        self.emit(f"[file: {block.get('external_id') or block.get('file_id') or '?'}]")

    def _markdown(self, block: Mapping[str, Any]) -> None:
        self.emit(mrkdwn_to_text(str(block.get("text") or ""), color=self.color))

    def _video(self, block: Mapping[str, Any]) -> None:
        title = text_of(block.get("title"))
        self.emit(f"[video: {title}] {block.get('video_url') or ''}".rstrip())

    def _rich_text(self, block: Mapping[str, Any]) -> None:
        self.emit(_rich_text(block.get("elements") or []))

    def _table(self, block: Mapping[str, Any]) -> None:
        rows = [
            [
                _rich_text([cell]) if cell.get("type") == "rich_text" else text_of(cell)
                for cell in row
            ]
            for row in block.get("rows") or []
        ]
        if not rows:
            return
        widths = [
            max(display_width(r[i]) for r in rows if i < len(r)) for i in range(max(map(len, rows)))
        ]
        for row in rows:
            self.lines.append(
                "  ".join(pad(cell, widths[i]) for i, cell in enumerate(row)).rstrip()
            )


def _rich_text(elements: Iterable[Mapping[str, Any]]) -> str:
    out: list[str] = []
    for el in elements:
        kind = el.get("type")
        if kind == "text":
            out.append(str(el.get("text", "")))
        elif kind == "link":
            out.append(str(el.get("text") or el.get("url", "")))
        elif kind == "user":
            out.append("@" + str(el.get("user_id", "")))
        elif kind == "channel":
            out.append("#" + str(el.get("channel_id", "")))
        elif kind == "emoji":
            out.append(EMOJI.get(str(el.get("name")), f":{el.get('name')}:"))
        elif kind == "rich_text_list":
            for item in el.get("elements") or []:
                out.append("• " + _rich_text(item.get("elements") or []) + "\n")
        elif "elements" in el:
            out.append(_rich_text(el["elements"]))
            if kind in ("rich_text_section", "rich_text_preformatted", "rich_text_quote"):
                out.append("\n")
    return "".join(out).rstrip("\n")


def render_blocks(
    blocks: Iterable[Mapping[str, Any]],
    *,
    width: int = DEFAULT_WIDTH,
    color: bool = False,
    start: int = 1,
) -> Rendered:
    """Blocks as lines of text; interactive elements numbered from `start`."""
    r = _Renderer(width, color, start)
    for block in blocks:
        r.block(block)
    return Rendered("\n".join(line.rstrip() for line in r.lines), r.controls)


def render_message(
    message: Mapping[str, Any], *, width: int = DEFAULT_WIDTH, color: bool = False
) -> Rendered:
    """A chat message or response_url payload: its blocks, else its (mrkdwn) text."""
    blocks = message.get("blocks")
    if isinstance(blocks, list) and blocks:
        return render_blocks(blocks, width=width, color=color)
    text = str(message.get("text") or "")
    attachments = message.get("attachments") or []
    lines = wrap_lines(mrkdwn_to_text(text, color=color), width) if text else []
    r = _Renderer(width, color, 1)
    for att in attachments:
        if isinstance(att, Mapping):
            for block in att.get("blocks") or []:
                r.block(block)
            if att.get("text"):
                r.emit(mrkdwn_to_text(str(att["text"]), color=color))
    return Rendered("\n".join(lines + r.lines), r.controls)


def render_view(
    view: Mapping[str, Any], *, width: int = DEFAULT_WIDTH, color: bool = False
) -> Rendered:
    """A modal or Home tab: its title (modals), then its blocks."""
    rendered = render_blocks(view.get("blocks") or [], width=width, color=color)
    title = text_of(view.get("title")) if view.get("title") else ""
    if title:
        head = _style(title, BOLD, color=color) if color else f"【{title}】"
        rendered.text = head + ("\n" + rendered.text if rendered.text else "")
    return rendered

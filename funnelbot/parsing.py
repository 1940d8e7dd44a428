"""Text grammar of the slash commands: tokens, mentions, amounts, dates, refs (SPEC §3, §8).

Pure functions over Slack's raw `text`; no Slack SDK, no database. Errors are
`ParseError`s whose `code` is an i18n message key, so handlers can answer in the user's
language. Slack escapes only `&`, `<` and `>` in command text
(https://api.slack.com/reference/surfaces/formatting#escaping); user mentions arrive as
`<@U123|name>` when the command is registered with `should_escape: true`.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext

from funnelbot.errors import UserError

__all__ = [
    "ParseError",
    "QuickCreate",
    "Ref",
    "looks_like_amount",
    "parse_amount",
    "parse_date",
    "parse_quick_create",
    "parse_ref",
    "parse_user_mention",
    "pop_trailing_option",
    "split_option",
    "tokenize",
    "unescape_slack",
]


class ParseError(UserError, ValueError):
    """code is an i18n message key like 'error.bad_amount'; params fill the message."""

    def __str__(self) -> str:
        if not self.params:
            return self.code
        args = ", ".join(f"{key}={value!r}" for key, value in self.params.items())
        return f"{self.code} ({args})"


# --- Slack text ----------------------------------------------------------------------

_ENTITY = re.compile(r"&(amp|lt|gt);")
_ENTITY_CHARS = {"amp": "&", "lt": "<", "gt": ">"}


def unescape_slack(text: str) -> str:
    """Undo Slack's `&amp; &lt; &gt;` so text is stored as the user typed it (SPEC §8)."""
    # One pass, so "&amp;lt;" (a typed "&lt;") becomes "&lt;" and not "<".
    return _ENTITY.sub(lambda m: _ENTITY_CHARS[m.group(1)], text)


_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^<>]*)?>")


def parse_user_mention(token: str) -> str | None:
    """Return the user id of a Slack mention token, since only ids identify people."""
    match = _MENTION.fullmatch(token)
    return match.group(1) if match else None


# Opening quote -> the characters that may close it. Phones and IMEs turn " into curly
# quotes, sometimes unpaired (”x”), so any double quote closes any double quote.
_DOUBLE_QUOTES = '"“”＂'
_QUOTE_CLOSERS: dict[str, str] = {q: _DOUBLE_QUOTES for q in _DOUBLE_QUOTES}
_QUOTE_CLOSERS.update({"「": "」", "『": "』"})

# Slack mark-up (`<@U1|bob smith>`, `<#C1|general>`, `<!channel>`, `<https://x|a link>`)
# is kept as one token even when its label holds spaces. A literal "<" typed by the user
# arrives as "&lt;", so a raw "<" only ever starts mark-up.
_MARKUP = re.compile(r"<(?:[@#!]|[A-Za-z][A-Za-z0-9+.\-]*:)[^<>]*>")


@dataclass(frozen=True)
class _Token:
    text: str
    # Offset in `text` where the first quoted part starts; None if nothing was quoted.
    quote_at: int | None


def _tokens(text: str) -> list[_Token]:
    """Split like a shell (quotes join words) but remember what was quoted."""
    tokens: list[_Token] = []
    parts: list[str] = []
    length = 0
    started = False
    quote_at: int | None = None
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():  # includes U+3000 ideographic space and NBSP
            if started:
                tokens.append(_Token("".join(parts), quote_at))
                parts, length, started, quote_at = [], 0, False, None
            i += 1
            continue
        closers = _QUOTE_CLOSERS.get(char)
        if closers is not None:
            end = next((j for j in range(i + 1, n) if text[j] in closers), -1)
            if end < 0:
                raise ParseError("error.unbalanced_quote")
            if quote_at is None:
                quote_at = length
            piece = text[i + 1 : end]
            i = end + 1
        elif char == "<" and (markup := _MARKUP.match(text, i)):
            piece = markup.group()
            i = markup.end()
        else:
            piece = char
            i += 1
        parts.append(piece)
        length += len(piece)
        started = True
    if started:
        tokens.append(_Token("".join(parts), quote_at))
    return tokens


def tokenize(text: str) -> list[str]:
    """Split command text into words so a "quoted name" can hold spaces."""
    return [token.text for token in _tokens(text)]


# --- options ---------------------------------------------------------------------------

_OPTION = re.compile(r"([a-z]+)[:：](.+)", re.DOTALL)


def split_option(token: str) -> tuple[str, str] | None:
    """Split `key:value` so options can sit anywhere in a command; URLs are not options."""
    match = _OPTION.fullmatch(token)
    if match is None or match.group(2).startswith("//"):
        return None
    return match.group(1), match.group(2)


def _token_option(token: _Token) -> tuple[str, str] | None:
    """An option only if its `key:` was typed unquoted ("stage:x" is a name word)."""
    option = split_option(token.text)
    if option is None or (token.quote_at is not None and token.quote_at <= len(option[0])):
        return None
    return option


def pop_trailing_option(tokens: list[str], key: str) -> tuple[list[str], str | None]:
    """Take the last `key:value` out of free text such as `next <ref> <text> due:<date>`."""
    for index in range(len(tokens) - 1, -1, -1):
        option = split_option(tokens[index])
        if option is not None and option[0] == key:
            return tokens[:index] + tokens[index + 1 :], option[1]
    return list(tokens), None


# --- amounts ---------------------------------------------------------------------------

# Thousands groups must be exactly three digits, so "5,00" is a typo, not 500.
_AMOUNT = re.compile(
    r"(?P<number>[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]+)?)"
    r"(?P<suffix>[kmb万亿千]?)"
)
_CURRENCY_SYMBOLS = "$¥€£"  # after NFKC, which also folds ￥ ＄ ￡ to these
_MULTIPLIERS = {
    "": Decimal(1),
    "k": Decimal(10) ** 3,
    "千": Decimal(10) ** 3,
    "万": Decimal(10) ** 4,
    "m": Decimal(10) ** 6,
    "亿": Decimal(10) ** 8,
    "b": Decimal(10) ** 9,
}
_AMOUNT_LIMIT = Decimal(10) ** 15
_CENT = Decimal("0.01")


def _scaled_amount(text: str) -> Decimal | None:
    """The unrounded value of an amount-shaped string, or None when it is not one."""
    # NFKC folds full-width digits, commas and currency signs typed with a CJK IME.
    body = unicodedata.normalize("NFKC", text).strip()
    if body and body[0] in _CURRENCY_SYMBOLS:
        body = body[1:]
    if body.endswith("元"):  # "5万元" is how Chinese speakers write 50 000 yuan
        body = body[:-1]
    match = _AMOUNT.fullmatch(body.lower())
    if match is None:
        return None
    with localcontext() as ctx:
        ctx.prec = 60  # wide enough that no accepted literal is rounded before quantize
        return Decimal(match.group("number").replace(",", "")) * _MULTIPLIERS[match.group("suffix")]


def _negative_amount(text: str) -> bool:
    """`-5000`, `-$5k`, `$-5k`: an amount with a minus sign, which no deal may have."""
    body = unicodedata.normalize("NFKC", text).strip()
    if body[:1] in _CURRENCY_SYMBOLS:
        body = body[1:]
    return body[:1] in "-\u2212" and _scaled_amount(body[1:]) is not None


def parse_amount(text: str) -> Decimal:
    """Read a deal amount as reps type it (50k, $5,000, 5万) into an exact 2-place Decimal."""
    value = _scaled_amount(text)
    if value is None:
        raise ParseError("error.bad_amount", value=text)
    if value >= _AMOUNT_LIMIT:
        raise ParseError("error.amount_too_large", value=text)
    with localcontext() as ctx:
        ctx.prec = 60
        amount = value.quantize(_CENT, rounding=ROUND_HALF_UP)
    if amount >= _AMOUNT_LIMIT:  # 999999999999999.999 rounds up to the limit
        raise ParseError("error.amount_too_large", value=text)
    return amount


def looks_like_amount(token: str) -> bool:
    """True iff parse_amount accepts token, to tell an amount from a word of the name."""
    try:
        parse_amount(token)
    except ParseError:
        return False
    return True


# --- dates -----------------------------------------------------------------------------

_WEEKDAYS = {
    "monday": 0, "mon": 0,
    "tuesday": 1, "tue": 1, "tues": 1,
    "wednesday": 2, "wed": 2,
    "thursday": 3, "thu": 3, "thur": 3, "thurs": 3,
    "friday": 4, "fri": 4,
    "saturday": 5, "sat": 5,
    "sunday": 6, "sun": 6,
}  # fmt: skip
_ZH_WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "七": 6}
_DAY_WORDS = {
    "today": 0, "now": 0, "tomorrow": 1, "tmr": 1, "tmrw": 1, "yesterday": -1,
    "今天": 0, "今日": 0, "明天": 1, "明日": 1, "后天": 2, "後天": 2, "大后天": 3,
    "大後天": 3, "昨天": -1, "前天": -2,
}  # fmt: skip
_ZH_DIGITS = {"零": 0, "一": 1, "二": 2, "两": 2, "兩": 2, "三": 3, "四": 4, "五": 5, "六": 6,
              "七": 7, "八": 8, "九": 9}  # fmt: skip

_NUM = r"[0-9]+|[零一二两兩三四五六七八九十]+"
_ISO_DATE = re.compile(r"([0-9]{4})([-/.])([0-9]{1,2})\2([0-9]{1,2})")
_EN_WEEKDAY = re.compile(r"(?:(next|this|on)\s+)?([a-z]+)")
_EN_RELATIVE = re.compile(
    r"(?:in\s*)?([0-9]+)\s*(d|days?|w|wks?|weeks?|mo|mos|months?)(?:\s+(?:from\s+now|later))?"
)
_ZH_WEEKDAY = re.compile(
    r"(下|下个|下個|本|这|這|这个|這個)?(?:周|週|星期|礼拜|禮拜)([一二三四五六日天七])"
)
_ZH_RELATIVE = re.compile(
    rf"({_NUM})\s*(?:个|個)?\s*(天|日|周|週|星期|礼拜|禮拜|个月|個月)\s*(?:后|後|以后|以後|之后|之後)"
)
_ZH_MONTH_DAY = re.compile(rf"(?:([0-9]{{4}})\s*年\s*)?({_NUM})\s*月\s*({_NUM})\s*[日号號]?")
_MONTH_DAY = re.compile(r"([0-9]{1,2})/([0-9]{1,2})")
_NEXT_MONTH = {"下个月", "下個月", "下月"}
# dateparser turns almost anything into a date ("3" -> a March, "a" -> a January), so it
# only sees text with a real word in it: three ASCII letters or a CJK character.
_WORDY = re.compile(r"[a-z]{3}|[\u4e00-\u9fff]")
_MAX_DATE_TEXT = 64  # nobody types a longer date; keeps dateparser away from huge input


def _zh_int(text: str) -> int | None:
    """Read 0-99 in digits or Chinese numerals (三, 十五, 二十一), as typed in 3天后 or 十二月."""
    if text.isascii():
        return int(text) if text.isdigit() else None
    if "十" not in text:
        return _ZH_DIGITS[text] if len(text) == 1 and text in _ZH_DIGITS else None
    tens, _, ones = text.partition("十")
    if len(tens) > 1 or len(ones) > 1 or "十" in ones:
        return None
    high = 1 if not tens else _ZH_DIGITS.get(tens)
    low = 0 if not ones else _ZH_DIGITS.get(ones)
    if high is None or low is None:
        return None
    return high * 10 + low


def _add_months(day: date, months: int) -> date:
    """Same day-of-month `months` later, clamped so Jan 31 + 1 month is Feb 28/29."""
    year, month_index = divmod(day.year * 12 + day.month - 1 + months, 12)
    month = month_index + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _next_weekday(today: date, weekday: int, *, include_today: bool = False) -> date:
    """The next `weekday` after today (or from today), as people mean "friday"."""
    ahead = (weekday - today.weekday()) % 7
    if ahead == 0 and not include_today:
        ahead = 7
    return today + timedelta(days=ahead)


def _month_day(year: int | None, month: int, day: int, today: date) -> date:
    """A month and day; with no year, the first such date on or after today."""
    if year is not None:
        return date(year, month, day)
    for offset in range(9):  # Feb 29 may be up to 8 years away
        try:
            candidate = date(today.year + offset, month, day)
        except ValueError:
            if not 1 <= month <= 12 or not 1 <= day <= 31:
                raise
            continue
        if candidate >= today:
            return candidate
    raise ValueError("no such day")


def _simple_date(text: str, today: date) -> date | None:
    """Forms we read ourselves: exact, fast, and with semantics we chose and documented."""
    if text in _DAY_WORDS:
        return today + timedelta(days=_DAY_WORDS[text])
    if match := _ISO_DATE.fullmatch(text):
        return date(int(match.group(1)), int(match.group(3)), int(match.group(4)))
    if match := _EN_WEEKDAY.fullmatch(text):
        qualifier, word = match.groups()
        if word in _WEEKDAYS:
            # "next monday" = the next Monday after today, like "monday"; "this friday"
            # may be today.
            return _next_weekday(today, _WEEKDAYS[word], include_today=qualifier == "this")
    if match := _EN_RELATIVE.fullmatch(text):
        count, unit = int(match.group(1)), match.group(2)
        if unit.startswith("d"):
            return today + timedelta(days=count)
        if unit.startswith("w"):
            return today + timedelta(weeks=count)
        return _add_months(today, count)
    if match := _ZH_WEEKDAY.fullmatch(text):
        qualifier, day_char = match.groups()
        weekday = _ZH_WEEKDAYS[day_char]
        if qualifier is None:
            return _next_weekday(today, weekday)
        # 下周五 / 本周五 name a day of a calendar week (Monday first), not "the next one".
        monday = today - timedelta(days=today.weekday())
        if qualifier.startswith("下"):
            monday += timedelta(weeks=1)
        return monday + timedelta(days=weekday)
    if match := _ZH_RELATIVE.fullmatch(text):
        count = _zh_int(match.group(1))
        if count is None:
            return None
        unit = match.group(2)
        if unit in ("天", "日"):
            return today + timedelta(days=count)
        if unit.endswith("月"):
            return _add_months(today, count)
        return today + timedelta(weeks=count)
    if text in _NEXT_MONTH:
        return _add_months(today, 1)
    if match := _ZH_MONTH_DAY.fullmatch(text):
        month, day = _zh_int(match.group(2)), _zh_int(match.group(3))
        if month is None or day is None:
            return None
        year = int(match.group(1)) if match.group(1) else None
        return _month_day(year, month, day, today)
    if match := _MONTH_DAY.fullmatch(text):  # 12/1 is December 1st in the US and China alike
        return _month_day(None, int(match.group(1)), int(match.group(2)), today)
    return None


def _fuzzy_date(text: str, today: date) -> date | None:
    """Ask dateparser about the long tail ("next week", "dec 5", "下周", "3个月后")."""
    import dateparser  # imported here: it takes ~0.1 s to import and more to warm up

    try:
        parsed = dateparser.parse(
            text,
            languages=["en", "zh"],
            settings={
                "PREFER_DATES_FROM": "future",
                "RELATIVE_BASE": datetime(today.year, today.month, today.day),
            },
        )
    except (ValueError, OverflowError, TypeError, KeyError):
        # dateparser raises assorted errors on odd input; to the user it is just a bad date.
        return None
    return parsed.date() if parsed is not None else None


def parse_date(text: str, today: date) -> date:
    """Read a due or close date as reps type it, relative to their `today`."""
    normalized = " ".join(unicodedata.normalize("NFKC", text).lower().split())
    if not normalized or len(normalized) > _MAX_DATE_TEXT:
        raise ParseError("error.bad_date", value=text)
    try:
        result = _simple_date(normalized, today)
    except (ValueError, OverflowError):  # 2026-02-30, "in 99999999 days"
        raise ParseError("error.bad_date", value=text) from None
    if result is None and not _ISO_DATE.fullmatch(normalized) and _WORDY.search(normalized):
        result = _fuzzy_date(normalized, today)
    if result is None:
        raise ParseError("error.bad_date", value=text)
    return result


# --- /deal new -------------------------------------------------------------------------

_QUICK_CREATE_OPTIONS = ("stage", "source", "close")


@dataclass(frozen=True)
class QuickCreate:
    """A deal as typed after `/deal new`; stage and source are validated by the domain."""

    name: str
    amount: Decimal | None
    owner: str | None  # Slack user id
    stage: str | None  # raw text, validated later by the domain
    source: str | None
    close: date | None


def parse_quick_create(text: str, today: date) -> QuickCreate:
    """Read `/deal new <name> [amount] [@owner] [stage:] [source:] [close:]` from raw text."""
    owner: str | None = None
    options: dict[str, str] = {}
    words: list[_Token] = []
    for token in _tokens(text):
        if token.quote_at is None and (user_id := parse_user_mention(token.text)):
            if owner is not None:
                raise ParseError("error.two_owners")
            owner = user_id
            continue
        if option := _token_option(token):
            key, value = option
            if key not in _QUICK_CREATE_OPTIONS:
                raise ParseError("error.unknown_option", option=key)
            options[key] = unescape_slack(value)  # a repeated option: the last one wins
            continue
        words.append(token)

    amount: Decimal | None = None
    for token in words[1:]:
        if token.quote_at is None and _negative_amount(token.text):
            raise ParseError("error.bad_amount", value=unescape_slack(token.text))
    # The last unquoted number is the amount, unless it is the first word ("3M Company").
    for index in range(len(words) - 1, 0, -1):
        token = words[index]
        if token.quote_at is None and _scaled_amount(token.text) is not None:
            amount = parse_amount(token.text)  # too large: say so, don't make it a name
            del words[index]
            break

    name = " ".join(unescape_slack(token.text) for token in words).strip()
    if not name:
        raise ParseError("error.name_required")
    close = options.get("close")
    return QuickCreate(
        name=name,
        amount=amount,
        owner=owner,
        stage=options.get("stage"),
        source=options.get("source"),
        close=parse_date(close, today) if close is not None else None,
    )


# --- refs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """How a command names a deal: by number (#42) or by a name prefix."""

    number: int | None  # '#42' or '42' -> 42
    prefix: str | None  # otherwise the (unescaped) text as a name prefix


_REF_NUMBER = re.compile(r"#?([0-9]+)")
# If a channel called "42" exists, Slack turns a typed "#42" into a channel link.
_REF_CHANNEL = re.compile(r"<#[A-Z0-9]+\|([0-9]+)>")
_MAX_REF_NUMBER = 2**31 - 1  # larger cannot be a deal id and would overflow an INTEGER bind


def parse_ref(token: str) -> Ref:
    """Tell a deal number from a name prefix, accepting #42, 42 and full-width ＃４２."""
    stripped = token.strip()
    if not stripped:
        raise ParseError("error.ref_required")
    normalized = unicodedata.normalize("NFKC", stripped)
    match = _REF_NUMBER.fullmatch(normalized) or _REF_CHANNEL.fullmatch(normalized)
    # Length first: int() of a 10 000-digit string raises instead of answering.
    digits = match.group(1) if match is not None else ""
    if digits and len(digits) <= len(str(_MAX_REF_NUMBER)) and int(digits) <= _MAX_REF_NUMBER:
        return Ref(int(digits), None)
    return Ref(None, unescape_slack(stripped))

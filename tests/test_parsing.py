"""The /deal text grammar (SPEC §3): amounts, dates, refs, tokens and quick-create."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funnelbot.parsing import (
    ParseError,
    QuickCreate,
    Ref,
    looks_like_amount,
    parse_amount,
    parse_date,
    parse_quick_create,
    parse_ref,
    parse_user_mention,
    pop_trailing_option,
    split_option,
    tokenize,
    unescape_slack,
)

TODAY = date(2026, 11, 28)  # a Saturday

QUOTE_CHARS = '"“”＂「」『』'


# --- ParseError -------------------------------------------------------------------------


def test_parse_error_keeps_code_and_params() -> None:
    error = ParseError("error.bad_amount", value="5,00")
    assert isinstance(error, ValueError)
    assert error.code == "error.bad_amount"
    assert error.params == {"value": "5,00"}
    assert "error.bad_amount" in str(error)


# --- unescape_slack ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ("&lt;!channel&gt;", "<!channel>"),
        ("a &lt; b &gt; c", "a < b > c"),
        ("&amp;lt;", "&lt;"),  # the user typed "&lt;" literally
        ("&amp;amp;", "&amp;"),
        ("<@U1|x>", "<@U1|x>"),
        ("&quot;hi&quot; &#39;", "&quot;hi&quot; &#39;"),  # Slack never sends these
        ("*bold* `code` 商机", "*bold* `code` 商机"),
        ("", ""),
    ],
)
def test_unescape_slack(raw: str, expected: str) -> None:
    assert unescape_slack(raw) == expected


@given(st.text())
def test_unescape_undoes_slack_escaping(text: str) -> None:
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert unescape_slack(escaped) == text


# --- tokenize ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("   ", []),
        ("a b  c", ["a", "b", "c"]),
        ("  lead\tand\ntrail  ", ["lead", "and", "trail"]),
        ('"Acme Corp" 50k', ["Acme Corp", "50k"]),
        ('"Acme   Corp"', ["Acme   Corp"]),
        ("“Acme Corp” 5万", ["Acme Corp", "5万"]),
        ("「阿里 云」 『腾讯 云』", ["阿里 云", "腾讯 云"]),
        ('a "" b', ["a", "", "b"]),
        ('""', [""]),
        ("甲\u3000乙", ["甲", "乙"]),
        ("a\u00a0b", ["a", "b"]),
        ('source:"trade show" x', ["source:trade show", "x"]),
        ('ab"c d"e', ["abc de"]),
        ("O'Brien's deal", ["O'Brien's", "deal"]),
        ("”unpaired curly”", ["unpaired curly"]),
        ('"mixed close”', ["mixed close"]),
        ("<@U1|bob smith> x", ["<@U1|bob smith>", "x"]),
        ('<https://x.io|a "link"> y', ['<https://x.io|a "link">', "y"]),
    ],
)
def test_tokenize(text: str, expected: list[str]) -> None:
    assert tokenize(text) == expected


@pytest.mark.parametrize("text", ['"open', 'a "b c', "“open", "「open", "『open」", 'a b"'])
def test_tokenize_unbalanced_quote(text: str) -> None:
    with pytest.raises(ParseError) as info:
        tokenize(text)
    assert info.value.code == "error.unbalanced_quote"


_plain_word = st.text(
    alphabet=st.characters(exclude_characters=QUOTE_CHARS + "<", exclude_categories=("Cs",)),
    min_size=0,
    max_size=20,
)


@given(st.lists(_plain_word, max_size=8))
def test_tokenize_round_trips_quoted_strings(words: list[str]) -> None:
    text = " ".join(f'"{word}"' for word in words)
    assert tokenize(text) == words


@given(st.lists(_plain_word.filter(lambda w: w != "" and not any(c.isspace() for c in w))))
def test_tokenize_plain_words_is_whitespace_split(words: list[str]) -> None:
    assert tokenize("  ".join(words)) == words


@given(st.text(max_size=200))
def test_tokenize_only_raises_parse_error(text: str) -> None:
    try:
        tokenize(text)
    except ParseError as error:
        assert error.code == "error.unbalanced_quote"


# --- parse_user_mention -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("<@U123ABC|alice>", "U123ABC"),
        ("<@U123ABC>", "U123ABC"),
        ("<@W123>", "W123"),
        ("<@U1|bob smith>", "U1"),
        ("@alice", None),
        ("alice", None),
        ("<#C123|general>", None),
        ("<!channel>", None),
        ("<@U123ABC|alice>x", None),
        ("x<@U123ABC>", None),
        ("<@u123>", None),
        ("<@>", None),
        ("", None),
    ],
)
def test_parse_user_mention(token: str, expected: str | None) -> None:
    assert parse_user_mention(token) == expected


# --- parse_amount -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("50000", "50000.00"),
        ("50,000", "50000.00"),
        ("50k", "50000.00"),
        ("50K", "50000.00"),
        ("1.2m", "1200000.00"),
        ("1.2M", "1200000.00"),
        ("2b", "2000000000.00"),
        ("2B", "2000000000.00"),
        ("$5k", "5000.00"),
        ("¥50,000", "50000.00"),
        ("￥50000", "50000.00"),
        ("€1,234.56", "1234.56"),
        ("£99", "99.00"),
        ("5万", "50000.00"),
        ("1.5亿", "150000000.00"),
        ("2千", "2000.00"),
        ("5万元", "50000.00"),
        ("1,234.56", "1234.56"),
        ("1,234,567", "1234567.00"),
        ("0", "0.00"),
        ("0.5", "0.50"),
        ("007", "7.00"),
        ("2026", "2026.00"),
        ("1.234", "1.23"),
        ("1.235", "1.24"),  # ROUND_HALF_UP, not banker's rounding
        ("0.005", "0.01"),
        ("0.004", "0.00"),
        ("1.23456k", "1234.56"),
        ("1.234565k", "1234.57"),
        ("  50k  ", "50000.00"),
        ("５万", "50000.00"),  # full-width digit from a CJK IME
        ("５０，０００", "50000.00"),
        ("999999999999999.99", "999999999999999.99"),
    ],
)
def test_parse_amount_accepts(text: str, expected: str) -> None:
    result = parse_amount(text)
    assert result == Decimal(expected)
    assert result.as_tuple().exponent == -2


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "-5",
        "-5k",
        "$-5",
        "-$5",
        "-0",
        "+5",
        "abc",
        "k",
        "$",
        "万",
        "5w",
        "5kk",
        "5 k",
        "50 000",
        "5,00",
        "5,0000",
        ",500",
        "1,23,456",
        "1.2.3",
        "5.",
        ".5",
        "1e5",
        "NaN",
        "nan",
        "inf",
        "Infinity",
        "$$5",
        "5$",
        "5%",
        "US$5",
        "5x",
        "٥",  # Arabic-Indic five: not a digit reps type here
        "0x10",
    ],
)
def test_parse_amount_rejects(text: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_amount(text)
    assert info.value.code == "error.bad_amount"
    assert info.value.params == {"value": text}


@pytest.mark.parametrize(
    "text",
    [
        "1000000000000000",
        "1,000,000,000,000,000",
        "1000000b",
        "10000000亿",
        "999999999999999.995",
        "9" * 400,
    ],
)
def test_parse_amount_too_large(text: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_amount(text)
    assert info.value.code == "error.amount_too_large"
    assert info.value.params == {"value": text}


@given(st.integers(min_value=0, max_value=10**15 - 1))
def test_parse_amount_with_thousands_separators(n: int) -> None:
    assert parse_amount(f"{n:,}") == n
    assert parse_amount(str(n)) == n


@given(st.integers(min_value=0, max_value=10**11 - 1))
def test_parse_amount_k_suffix(n: int) -> None:
    assert parse_amount(f"{n}k") == n * 1000
    assert parse_amount(f"{n}万") == n * 10000


@given(st.decimals(min_value=0, max_value=Decimal("999999999999999.99"), places=2))
def test_parse_amount_two_places(d: Decimal) -> None:
    assert parse_amount(f"{d:,.2f}") == d
    assert parse_amount(f"${d:.2f}") == d


@given(st.text(max_size=30))
def test_parse_amount_only_raises_parse_error(text: str) -> None:
    try:
        value = parse_amount(text)
    except ParseError as error:
        assert error.code in {"error.bad_amount", "error.amount_too_large"}
    else:
        assert 0 <= value < 10**15


# --- looks_like_amount ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("50k", True),
        ("$5k", True),
        ("5万", True),
        ("2026", True),
        ("1,234.56", True),
        ("Acme", False),
        ("5w", False),
        ("5,00", False),
        ("-5", False),
        ("3M", True),
        ("3Mx", False),
        ("", False),
        ("1000000000000000", False),  # too large is not an amount parse_amount accepts
    ],
)
def test_looks_like_amount(token: str, expected: bool) -> None:
    assert looks_like_amount(token) is expected


@given(st.text(max_size=20))
def test_looks_like_amount_agrees_with_parse_amount(token: str) -> None:
    try:
        parse_amount(token)
        accepted = True
    except ParseError:
        accepted = False
    assert looks_like_amount(token) is accepted


# --- parse_date -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # ISO
        ("2026-12-01", date(2026, 12, 1)),
        ("2026/12/01", date(2026, 12, 1)),
        ("2026-1-5", date(2026, 1, 5)),
        ("2024-02-29", date(2024, 2, 29)),
        ("２０２６－１２－０１", date(2026, 12, 1)),  # full-width
        # words
        ("today", date(2026, 11, 28)),
        ("Today", date(2026, 11, 28)),
        ("tomorrow", date(2026, 11, 29)),
        ("TOMORROW", date(2026, 11, 29)),
        ("yesterday", date(2026, 11, 27)),
        # weekdays: the next one strictly after today (a Saturday)
        ("friday", date(2026, 12, 4)),
        ("fri", date(2026, 12, 4)),
        ("Friday", date(2026, 12, 4)),
        ("monday", date(2026, 11, 30)),
        ("mon", date(2026, 11, 30)),
        ("tue", date(2026, 12, 1)),
        ("wednesday", date(2026, 12, 2)),
        ("thurs", date(2026, 12, 3)),
        ("sunday", date(2026, 11, 29)),
        ("saturday", date(2026, 12, 5)),  # not today
        ("sat", date(2026, 12, 5)),
        ("next monday", date(2026, 11, 30)),
        ("next friday", date(2026, 12, 4)),
        ("next saturday", date(2026, 12, 5)),
        ("this saturday", date(2026, 11, 28)),
        ("on friday", date(2026, 12, 4)),
        # relative counts
        ("in 3 days", date(2026, 12, 1)),
        ("3 days", date(2026, 12, 1)),
        ("3d", date(2026, 12, 1)),
        ("3D", date(2026, 12, 1)),
        ("1 day", date(2026, 11, 29)),
        ("0d", date(2026, 11, 28)),
        ("2w", date(2026, 12, 12)),
        ("in 2 weeks", date(2026, 12, 12)),
        ("1 week", date(2026, 12, 5)),
        ("3 days from now", date(2026, 12, 1)),
        ("in  3   days", date(2026, 12, 1)),
        ("1 month", date(2026, 12, 28)),
        ("in 3 months", date(2027, 2, 28)),
        ("2 months", date(2027, 1, 28)),
        # Chinese
        ("今天", date(2026, 11, 28)),
        ("明天", date(2026, 11, 29)),
        ("后天", date(2026, 11, 30)),
        ("大后天", date(2026, 12, 1)),
        ("昨天", date(2026, 11, 27)),
        ("3天后", date(2026, 12, 1)),
        ("３天后", date(2026, 12, 1)),
        ("两天后", date(2026, 11, 30)),
        ("十天后", date(2026, 12, 8)),
        ("3天以后", date(2026, 12, 1)),
        ("一周后", date(2026, 12, 5)),
        ("两个星期后", date(2026, 12, 12)),
        ("3个月后", date(2027, 2, 28)),
        ("一个月后", date(2026, 12, 28)),
        ("周五", date(2026, 12, 4)),
        ("星期五", date(2026, 12, 4)),
        ("礼拜五", date(2026, 12, 4)),
        ("周日", date(2026, 11, 29)),
        ("星期天", date(2026, 11, 29)),
        ("周六", date(2026, 12, 5)),
        # 下周X is a day of next calendar week (Mon 11-30 .. Sun 12-06)
        ("下周一", date(2026, 11, 30)),
        ("下周五", date(2026, 12, 4)),
        ("下周日", date(2026, 12, 6)),
        ("下个星期三", date(2026, 12, 2)),
        # 本周X is a day of this calendar week (Mon 11-23 .. Sun 11-29)
        ("本周五", date(2026, 11, 27)),
        ("这周日", date(2026, 11, 29)),
        ("下个月", date(2026, 12, 28)),
        ("12月1日", date(2026, 12, 1)),
        ("12月1号", date(2026, 12, 1)),
        ("十二月一日", date(2026, 12, 1)),
        ("2026年12月1日", date(2026, 12, 1)),
        ("2027年1月5日", date(2027, 1, 5)),
        ("1月5日", date(2027, 1, 5)),  # already past this year
        ("11月28日", date(2026, 11, 28)),  # today counts
        ("11月27日", date(2027, 11, 27)),
        ("12/1", date(2026, 12, 1)),
        # long tail, via dateparser
        ("next week", date(2026, 12, 5)),
        ("dec 5", date(2026, 12, 5)),
        ("5 december 2027", date(2027, 12, 5)),
        ("in two weeks", date(2026, 12, 12)),
        ("下周", date(2026, 12, 5)),
    ],
)
def test_parse_date(text: str, expected: date) -> None:
    assert parse_date(text, TODAY) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "3",
        "42",
        "a",
        "x1",
        "foo",
        "call bob",
        "2026-02-30",
        "2026-13-01",
        "2025-02-29",
        "0000-01-01",
        "2月30日",
        "13月1日",
        "13/45",
        "2/30",
        "in 99999999999 days",
        "in 99999999999 months",
        "99999999999个月后",
        "1e3",
        "你好",
        "next " * 40,
        "friday" + "x" * 10_000,
    ],
)
def test_parse_date_rejects(text: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_date(text, TODAY)
    assert info.value.code == "error.bad_date"
    assert info.value.params == {"value": text}


@pytest.mark.parametrize(
    ("text", "today", "expected"),
    [
        ("1 month", date(2026, 1, 31), date(2026, 2, 28)),
        ("下个月", date(2024, 1, 31), date(2024, 2, 29)),
        ("12 months", date(2024, 2, 29), date(2025, 2, 28)),
        ("2月29日", date(2026, 11, 28), date(2028, 2, 29)),
        ("friday", date(2026, 12, 4), date(2026, 12, 11)),  # on a Friday: next week's
        ("下周五", date(2026, 11, 23), date(2026, 12, 4)),  # on a Monday: next week's
        ("next friday", date(2026, 11, 23), date(2026, 11, 27)),  # English: the next one
    ],
)
def test_parse_date_edges(text: str, today: date, expected: date) -> None:
    assert parse_date(text, today) == expected


@given(st.dates(min_value=date(1000, 1, 1)))
def test_parse_date_iso_is_that_date(day: date) -> None:
    assert parse_date(day.isoformat(), TODAY) == day
    assert parse_date(day.isoformat().replace("-", "/"), TODAY) == day


@given(st.integers(min_value=0, max_value=3000), st.dates(max_value=date(9000, 1, 1)))
def test_parse_date_in_n_days(n: int, today: date) -> None:
    expected = today + timedelta(days=n)
    assert parse_date(f"in {n} days", today) == expected
    assert parse_date(f"{n}d", today) == expected
    assert parse_date(f"{n}天后", today) == expected


@given(
    st.sampled_from(["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]),
    st.dates(max_value=date(9000, 1, 1)),
)
def test_parse_date_weekday_is_within_the_next_week(name: str, today: date) -> None:
    result = parse_date(name, today)
    assert 1 <= (result - today).days <= 7
    assert result.strftime("%A").lower() == name


@settings(max_examples=60, deadline=None)  # dateparser's first call loads its data
@given(st.text(max_size=40))
def test_parse_date_only_raises_parse_error(text: str) -> None:
    try:
        parse_date(text, TODAY)
    except ParseError as error:
        assert error.code == "error.bad_date"


def _run_python(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()


def test_dateparser_is_imported_lazily() -> None:
    code = (
        "import sys\nfrom datetime import date\nimport funnelbot.parsing as p\n"
        "print('dateparser' in sys.modules)\n"
        "for s in ['2026-12-01','tomorrow','friday','next monday','3d','in 2 weeks','3天后',"
        "'明天','下周一','周五','12月1日']:\n"
        "    p.parse_date(s, date(2026, 11, 28))\n"
        "print('dateparser' in sys.modules)\n"
        "p.parse_date('next week', date(2026, 11, 28))\n"
        "print('dateparser' in sys.modules)\n"
    )
    assert _run_python(code).split() == ["False", "False", "True"]


# --- split_option -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("stage:proposal", ("stage", "proposal")),
        ("due:2026-12-01", ("due", "2026-12-01")),
        ("source：展会", ("source", "展会")),
        ("close:2026-12-31", ("close", "2026-12-31")),
        ("source:web:form", ("source", "web:form")),
        ("stage:", None),
        (":proposal", None),
        ("Stage:proposal", None),
        ("stage2:x", None),
        ("due_date:x", None),
        ("http://x", None),
        ("https://example.com", None),
        ("10:30", None),
        ("阶段:方案", None),
        ("proposal", None),
        ("", None),
    ],
)
def test_split_option(token: str, expected: tuple[str, str] | None) -> None:
    assert split_option(token) == expected


# --- pop_trailing_option ----------------------------------------------------------------------


def test_pop_trailing_option_takes_the_last_matching_token() -> None:
    tokens = ["call", "due:monday", "them", "due:friday", "stage:x"]
    rest, value = pop_trailing_option(tokens, "due")
    assert rest == ["call", "due:monday", "them", "stage:x"]
    assert value == "friday"
    assert tokens == ["call", "due:monday", "them", "due:friday", "stage:x"]  # not mutated


def test_pop_trailing_option_absent() -> None:
    tokens = ["send", "the", "quote"]
    rest, value = pop_trailing_option(tokens, "due")
    assert rest == ["send", "the", "quote"]
    assert value is None
    assert rest is not tokens


def test_pop_trailing_option_full_width_colon() -> None:
    assert pop_trailing_option(["回电", "due：明天"], "due") == (["回电"], "明天")


# --- parse_quick_create -----------------------------------------------------------------------


def test_quick_create_full_example() -> None:
    text = "Acme Corp 50k <@U2|bob> stage:proposal source:web close:2026-12-31"
    assert parse_quick_create(text, TODAY) == QuickCreate(
        name="Acme Corp",
        amount=Decimal("50000.00"),
        owner="U2",
        stage="proposal",
        source="web",
        close=date(2026, 12, 31),
    )


@pytest.mark.parametrize(
    ("text", "name", "amount"),
    [
        ('"Acme 2026" 5万', "Acme 2026", Decimal("50000")),
        ("Acme", "Acme", None),
        ("Acme Corp", "Acme Corp", None),
        ("Acme $5k", "Acme", Decimal("5000")),
        ("Acme 50k Corp", "Acme Corp", Decimal("50000")),
        ("Acme 10k 20k", "Acme 10k", Decimal("20000")),
        ("50k", "50k", None),  # a lone number is a name
        ("2026", "2026", None),
        ("2026 Expansion", "2026 Expansion", None),
        ("Acme 2026 Expansion", "Acme Expansion", Decimal("2026")),  # as specified; quote it
        ("Big 3M Company", "Big Company", Decimal("3000000")),
        ("3M Company", "3M Company", None),
        ('"3M Company"', "3M Company", None),
        ('"3M Company" 1.2m', "3M Company", Decimal("1200000")),
        ('Acme "50k"', "Acme 50k", None),  # quoted: verbatim name, never the amount
        ('"Acme   Corp"  9', "Acme   Corp", Decimal("9")),
        ("Acme    Corp", "Acme Corp", None),
        ("阿里云 1.5亿", "阿里云", Decimal("150000000")),
        ("「阿里 云」 ¥50,000", "阿里 云", Decimal("50000")),
        ("Tom &amp; Jerry 5k", "Tom & Jerry", Decimal("5000")),
        ("&lt;!channel&gt; *bold* 1", "<!channel> *bold*", Decimal("1")),
        ("Robert'); DROP TABLE deals;-- 1k", "Robert'); DROP TABLE deals;--", Decimal("1000")),
        ("Acme 5,00", "Acme 5,00", None),
        ("Acme\u3000Corp\u30005万", "Acme Corp", Decimal("50000")),
    ],
)
def test_quick_create_name_and_amount(text: str, name: str, amount: Decimal | None) -> None:
    result = parse_quick_create(text, TODAY)
    assert result.name == name
    assert result.amount == amount


def test_quick_create_options_anywhere_and_unescaped() -> None:
    text = "stage:lead <@W9> Big &amp; Co source:&lt;web&gt; 7k close:明天"
    assert parse_quick_create(text, TODAY) == QuickCreate(
        name="Big & Co",
        amount=Decimal("7000.00"),
        owner="W9",
        stage="lead",
        source="<web>",
        close=date(2026, 11, 29),
    )


def test_quick_create_quoted_option_value_and_quoted_key() -> None:
    result = parse_quick_create('Acme source:"trade show" "stage:x"', TODAY)
    assert result.source == "trade show"
    assert result.stage is None
    assert result.name == "Acme stage:x"


def test_quick_create_quoted_mention_is_name_text() -> None:
    result = parse_quick_create('Acme "<@U1>"', TODAY)
    assert result.owner is None
    assert result.name == "Acme <@U1>"


def test_quick_create_mention_with_spaces_in_label() -> None:
    result = parse_quick_create("Acme <@U7|bob smith> 1k", TODAY)
    assert (result.name, result.owner, result.amount) == ("Acme", "U7", Decimal("1000"))


def test_quick_create_url_is_name_text() -> None:
    assert parse_quick_create("Acme http://acme.io", TODAY).name == "Acme http://acme.io"


def test_quick_create_repeated_option_last_wins() -> None:
    assert parse_quick_create("Acme stage:lead stage:proposal", TODAY).stage == "proposal"


@pytest.mark.parametrize(
    ("text", "code", "params"),
    [
        ("", "error.name_required", {}),
        ("   ", "error.name_required", {}),
        ('""', "error.name_required", {}),
        ("<@U1> stage:lead", "error.name_required", {}),
        ("Acme <@U1> <@U2>", "error.two_owners", {}),
        ("Acme <@U1> <@U1>", "error.two_owners", {}),
        ("Acme owner:bob", "error.unknown_option", {"option": "owner"}),
        ("Acme re:invent", "error.unknown_option", {"option": "re"}),
        ('"Acme', "error.unbalanced_quote", {}),
        ("Acme close:someday", "error.bad_date", {"value": "someday"}),
        ("Acme 1000000000000000", "error.amount_too_large", {"value": "1000000000000000"}),
    ],
)
def test_quick_create_errors(text: str, code: str, params: dict[str, object]) -> None:
    with pytest.raises(ParseError) as info:
        parse_quick_create(text, TODAY)
    assert info.value.code == code
    assert info.value.params == params


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80))
def test_quick_create_only_raises_parse_error(text: str) -> None:
    try:
        result = parse_quick_create(text, TODAY)
    except ParseError:
        return
    assert result.name
    assert result.name == result.name.strip()


# --- parse_ref --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("#42", Ref(42, None)),
        ("42", Ref(42, None)),
        ("＃42", Ref(42, None)),
        ("＃４２", Ref(42, None)),
        (" #7 ", Ref(7, None)),
        ("#0", Ref(0, None)),
        ("<#C0123ABC|42>", Ref(42, None)),  # Slack linked "#42" to a channel named 42
        ("acme", Ref(None, "acme")),
        ("Acme", Ref(None, "Acme")),
        ("阿里", Ref(None, "阿里")),
        ("#acme", Ref(None, "#acme")),
        ("42abc", Ref(None, "42abc")),
        ("#-1", Ref(None, "#-1")),
        ("Tom &amp; Jerry", Ref(None, "Tom & Jerry")),
        ("99999999999999999999", Ref(None, "99999999999999999999")),
    ],
)
def test_parse_ref(token: str, expected: Ref) -> None:
    assert parse_ref(token) == expected


@pytest.mark.parametrize("token", ["", "   ", "\u3000"])
def test_parse_ref_required(token: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_ref(token)
    assert info.value.code == "error.ref_required"


@given(st.integers(min_value=0, max_value=2**31 - 1))
def test_parse_ref_numbers(n: int) -> None:
    assert parse_ref(f"#{n}") == Ref(n, None)
    assert parse_ref(str(n)) == Ref(n, None)

"""The message catalogues (SPEC §3: English and 简体中文): every key the code uses exists in
both, the two have the same keys and the same `{placeholders}`, every template formats,
every call passes the placeholders its template needs, and money and numbers follow the
locale.

Keys are found by reading the source (funnelbot/**/*.py) with `ast`: string literals
that look like message keys, the first argument of translator calls and of the user
errors, and f-string keys whose variable part is enumerated here. No database needed.
"""

from __future__ import annotations

import ast
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "funnelbot"
PREFIXES = (
    "error",
    "deal",
    "settings",
    "report",
    "nudge",
    "metrics",
    "import",
    "stages",
    "home",
    "weekday",
    "button",
    "field",
    "status",
    "help",
    "list",
    "modal",
    "hint",
    "criteria",
    "chart",
    "reminder",
    "history",
)
_PREFIX = "|".join(PREFIXES)
KEY = re.compile(rf"^(?:{_PREFIX})\.[a-z0-9_]+(?:\.[a-z0-9_]+)*$")
DYNAMIC_HEAD = re.compile(rf"^(?:{_PREFIX})\.$")
ANY_KEY = re.compile(r"^[a-z_]+\.[a-z0-9_]+(?:\.[a-z0-9_]+)*$")
# Callables whose first argument is a message key.
TRANSLATING = frozenset(
    {
        "tr",
        "UserError",
        "ParseError",
        "Forbidden",
        "NotFound",
        "StaleVersion",
        "section",  # blocks.weekly_thread's section(key, movers)
    }
)
# Callables whose string arguments are not messages (table.column references).
NOT_MESSAGES = frozenset({"ForeignKey", "relationship", "mapped_column", "Index", "text"})


@dataclass
class Use:
    key: str
    where: str
    # Keyword arguments a call passes with the key (None: unknown, e.g. **params).
    params: frozenset[str] | None = None


@dataclass
class Scan:
    uses: list[Use] = field(default_factory=list)
    # f-string keys: (prefix such as "status.", the source of the variable part, where).
    dynamic: list[tuple[str, str, str]] = field(default_factory=list)
    # Literal `field=` values given to clean_text/clean_optional (shown as field.<x>).
    fields: set[str] = field(default_factory=set)
    # Commands given to help_message (shown as help.<command>).
    help_commands: set[str] = field(default_factory=set)

    @property
    def keys(self) -> set[str]:
        return {u.key for u in self.uses}


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def scan_source(source: str, where: str, scan: Scan | None = None) -> Scan:
    """Every message key `source` uses (see the module docstring)."""
    scan = scan or Scan()
    tree = ast.parse(source)
    skip: set[int] = set()
    in_calls: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        if name in NOT_MESSAGES:
            skip.update(id(a) for a in ast.walk(node))
            continue
        if name in ("clean_text", "clean_optional"):
            for kw in node.keywords:
                if kw.arg == "field" and isinstance(kw.value, ast.Constant):
                    scan.fields.add(str(kw.value.value))
        if name == "help_message" and len(node.args) >= 2:
            arg = node.args[1]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                scan.help_commands.add(arg.value.lstrip("/"))
        first = node.args[0] if node.args else None
        if (
            name in TRANSLATING
            and isinstance(first, ast.Constant)
            and isinstance(first.value, str)
            and (name != "section" or KEY.match(first.value))
        ):
            assert ANY_KEY.match(first.value), (
                f"{where}:{node.lineno}: {name}({first.value!r}) is not a message key"
            )
            spread = any(kw.arg is None for kw in node.keywords)
            params = None if spread else frozenset(kw.arg for kw in node.keywords)
            scan.uses.append(Use(first.value, f"{where}:{node.lineno}", params))
            in_calls.add(id(first))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.JoinedStr):
            head = node.values[0] if node.values else None
            if (
                isinstance(head, ast.Constant)
                and DYNAMIC_HEAD.match(str(head.value))
                and len(node.values) == 2
                and isinstance(node.values[1], ast.FormattedValue)
            ):
                variable = ast.unparse(node.values[1].value)
                scan.dynamic.append((str(head.value), variable, f"{where}:{node.lineno}"))
            elif isinstance(head, ast.Constant) and DYNAMIC_HEAD.match(str(head.value)):
                raise AssertionError(f"{where}:{node.lineno}: a key built in a way I can't check")
            for part in node.values:  # the constant parts of an f-string are not keys
                skip.add(id(part))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and KEY.match(node.value)
            and id(node) not in in_calls
        ):
            scan.uses.append(Use(node.value, f"{where}:{node.lineno}"))
    return scan


def source_files() -> list[Path]:
    files = sorted(p for p in PACKAGE.rglob("*.py") if "i18n" not in p.relative_to(PACKAGE).parts)
    assert len(files) > 20, files
    return files


@pytest.fixture(scope="module")
def scan() -> Scan:
    result = Scan()
    for path in source_files():
        scan_source(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)), result)
    return result


@pytest.fixture(scope="module")
def catalogues() -> dict[str, dict[str, str]]:
    from funnelbot.i18n import en, zh

    return {"en": en.MESSAGES, "zh": zh.MESSAGES}


def enumerate_dynamic(scan: Scan) -> dict[str, set[str]]:
    """Every value each f-string key prefix can take."""
    from funnelbot.models import LOST, OPEN, WON
    from funnelbot.teamconfig import WEEKDAYS

    return {
        "status.": {OPEN, WON, LOST},
        "weekday.": set(WEEKDAYS),
        "help.": set(scan.help_commands),
        # Shown only when the catalogue has it (`tr.has`); the fields the code names are
        # checked in test_every_field_the_code_names_has_a_label.
        "field.": set(),
    }


def missing_keys(
    keys: Iterable[str], catalogues: dict[str, dict[str, str]]
) -> dict[str, list[str]]:
    """Keys absent from a catalogue: {key: [languages missing it]}."""
    found: dict[str, list[str]] = {}
    for key in sorted(set(keys)):
        langs = [lang for lang, messages in catalogues.items() if key not in messages]
        if langs:
            found[key] = langs
    return found


def placeholder_problems(
    uses: Iterable[Use], catalogues: dict[str, dict[str, str]]
) -> list[tuple[str, str, list[str]]]:
    """Calls that do not pass every placeholder of their template: (where, key, missing)."""
    problems = []
    for use in uses:
        if use.params is None or use.key not in catalogues["en"]:
            continue
        needed = _placeholders(catalogues["en"][use.key])
        if not needed <= use.params:
            problems.append((use.where, use.key, sorted(needed - use.params)))
    return problems


def _placeholders(template: str) -> set[str]:
    names = set()
    for _, name, spec, conversion in string.Formatter().parse(template):
        if name is not None:
            assert name.isidentifier(), f"odd placeholder {{{name}}} in {template!r}"
            assert not spec and not conversion, f"format spec in {template!r}"
            names.add(name)
    return names


# --- the scanner itself -------------------------------------------------------------------


def test_scanner_reports_an_unknown_key(catalogues) -> None:
    """The checks below can fail: a key that is in no catalogue is reported."""
    source = (
        "def f(tr, x):\n"
        '    tr("deal.created", number=1)\n'
        '    raise UserError("error.no_such_key_for_the_test", value=x)\n'
        '    label = "home.title_that_does_not_exist"\n'
        '    return tr(f"status.{x}")\n'
    )
    scan = scan_source(source, "example.py")
    assert scan.keys == {
        "deal.created",
        "error.no_such_key_for_the_test",
        "home.title_that_does_not_exist",
    }
    assert scan.dynamic == [("status.", "x", "example.py:5")]
    assert missing_keys(scan.keys, catalogues) == {
        "error.no_such_key_for_the_test": ["en", "zh"],
        "home.title_that_does_not_exist": ["en", "zh"],
    }
    # A call that forgets a placeholder is reported too.
    short = scan_source('tr("deal.moved", number=1)\ntr("deal.moved", **p)\n', "example.py")
    assert placeholder_problems(short.uses, catalogues) == [
        ("example.py:1", "deal.moved", ["stage"])
    ]
    only_en = {"en": {"a.b": "x"}, "zh": {}}
    assert missing_keys(["a.b"], only_en) == {"a.b": ["zh"]}


def test_scanner_ignores_what_is_not_a_message() -> None:
    source = (
        "import sqlalchemy as sa\n"
        'x = sa.ForeignKey("stages.id")\n'
        'y = sa.ForeignKey("deals.id")\n'
        'logger = logging.getLogger("funnelbot.jobs")\n'
        'sql = sa.text("history.at")\n'
    )
    scan = scan_source(source, "example.py")
    assert scan.keys == set()
    # A key built some other way can't be checked: the scanner says so instead of passing.
    with pytest.raises(AssertionError, match="can't check"):
        scan_source('label = f"status.{x}.{y}"\n', "example.py")


def test_scanner_reads_the_real_code(scan) -> None:
    # A few keys every version of funnelbot uses, found where they are used.
    assert {"deal.created", "error.forbidden", "settings.saved", "home.title"} <= scan.keys
    assert len(scan.keys) > 150
    assert {"deal", "funnel"} <= scan.help_commands


# --- keys ----------------------------------------------------------------------------------


def test_every_key_used_in_the_code_is_in_both_catalogues(scan, catalogues) -> None:
    missing = missing_keys(scan.keys, catalogues)
    where = {key: sorted({u.where for u in scan.uses if u.key == key})[:3] for key in missing}
    assert missing == {}, f"missing messages (key: languages, used at): {where}"


def test_every_f_string_key_is_enumerated_and_present(scan, catalogues) -> None:
    values = enumerate_dynamic(scan)
    unknown = [d for d in scan.dynamic if d[0] not in values]
    assert not unknown, f"f-string keys with a prefix this test can't enumerate: {unknown}"
    keys = {prefix + value for prefix, options in values.items() for value in options}
    assert missing_keys(keys, catalogues) == {}
    assert len(keys) >= 12


def test_every_field_the_code_names_has_a_label(scan, catalogues) -> None:
    """`error.text_required` & co. show the field's label (field.<name>) when it exists."""
    assert scan.fields, "no clean_text/clean_optional field= found"
    missing = missing_keys({f"field.{name}" for name in scan.fields}, catalogues)
    assert missing == {}


def test_catalogues_have_the_same_keys(catalogues) -> None:
    en, zh = set(catalogues["en"]), set(catalogues["zh"])
    assert sorted(en - zh) == [] and sorted(zh - en) == []


def test_no_empty_or_untranslated_messages(catalogues) -> None:
    for key, text in catalogues["en"].items():
        assert text.strip(), key
        assert catalogues["zh"][key].strip(), key
    # Chinese messages are in Chinese (a few are only symbols or names).
    cjk = re.compile(r"[\u4e00-\u9fff]")
    ascii_only = [k for k, v in catalogues["zh"].items() if not cjk.search(v)]
    assert len(ascii_only) <= 0.05 * len(catalogues["zh"]), ascii_only


# --- templates -----------------------------------------------------------------------------


def test_placeholders_match_between_languages(catalogues) -> None:
    differ = {
        key: (_placeholders(catalogues["en"][key]), _placeholders(catalogues["zh"][key]))
        for key in catalogues["en"]
        if key in catalogues["zh"]
        and _placeholders(catalogues["en"][key]) != _placeholders(catalogues["zh"][key])
    }
    assert differ == {}


def test_every_template_formats(catalogues) -> None:
    from funnelbot.i18n import Translator

    for lang, messages in catalogues.items():
        tr = Translator(lang)
        for key, template in messages.items():
            names = _placeholders(template)
            text = tr(key, **{n: f"<{n}>" for n in names}) if names else tr(key)
            for n in names:
                assert f"<{n}>" in text, (lang, key)
            assert "{" not in text.replace("{{", "") or "{{" in template, (lang, key, text)


def test_every_call_passes_the_placeholders_its_message_needs(scan, catalogues) -> None:
    """`tr("deal.moved", number=…)` must give every {placeholder} of the template: a
    missing one is a KeyError (or raw braces) in front of the user."""
    checked = [u for u in scan.uses if u.params is not None]
    assert len(checked) > 100
    assert placeholder_problems(scan.uses, catalogues) == []


def test_a_missing_message_is_an_error_not_a_blank() -> None:
    from funnelbot.i18n import Translator

    with pytest.raises(KeyError):
        Translator("zh")("error.no_such_key_for_the_test")


# --- numbers and money per locale -------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "currency", "amount", "expected"),
    [
        ("zh", "CNY", Decimal("1234567"), "¥1,234,567"),
        ("en", "USD", Decimal("50000"), "$50,000"),
        ("en", "USD", Decimal("0"), "$0"),
        ("en", "USD", Decimal("1234.5"), "$1,234.50"),
        ("zh", "CNY", Decimal("1234.56"), "¥1,234.56"),
        ("en", "EUR", Decimal("50000"), "€50,000"),
        ("en", "CNY", Decimal("50000"), "CN¥50,000"),
        ("zh", "USD", Decimal("50000"), "US$50,000"),
        ("en", "USD", Decimal("50000.00"), "$50,000"),  # stored amounts carry cents
        ("en", "JPY", Decimal("1200"), "¥1,200"),
    ],
)
def test_money_follows_the_locale(lang, currency, amount, expected) -> None:
    from funnelbot.i18n import Translator

    assert Translator(lang, currency).money(amount) == expected


def test_missing_money_and_dates() -> None:
    import datetime as dt

    from funnelbot.i18n import Translator

    assert Translator("en").money(None) == "—"
    assert Translator("en").date(None) == "—"
    assert Translator("zh").date(dt.date(2026, 3, 5)) == "2026年3月5日"
    assert Translator("en").date(dt.date(2026, 3, 5)) == "Thu 05 Mar 2026"
    assert Translator("en").number(1234567) == "1,234,567"
    assert Translator("zh").number(1234567) == "1,234,567"
    assert Translator("en").percent(0.4) == "40%"
    assert Translator("en").percent(None) == "—"


@pytest.mark.parametrize(
    ("locale", "default", "expected"),
    [
        ("zh-CN", "en", "zh"),
        ("zh_Hans", "en", "zh"),
        ("zh-TW", "en", "zh"),
        ("en-GB", "zh", "en"),
        ("fr-FR", "zh", "zh"),
        (None, "zh", "zh"),
        ("", "en", "en"),
    ],
)
def test_language_of_a_slack_locale(locale, default, expected) -> None:
    from funnelbot.i18n import language_of

    assert language_of(locale, default) == expected


def test_an_unknown_language_falls_back_to_english() -> None:
    from funnelbot.i18n import Translator

    assert Translator("fr").lang == "en"
    assert Translator("fr")("button.show") == "Show"


# --- how errors name a field ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("lang", "expected"),
    [("en", "The next step is empty."), ("zh", "下一步")],
)
def test_a_deal_field_is_named_by_its_label(lang, expected) -> None:
    from funnelbot.errors import UserError
    from funnelbot.i18n import Translator
    from funnelbot.listeners.context import error_message

    text = error_message(Translator(lang), UserError("error.text_required", field="next_step"))
    assert expected in text["text"]


def test_a_stages_file_field_is_named_as_written() -> None:
    """`name` in a stages file is that file's key, not the deal's "Deal name"."""
    from funnelbot.errors import UserError
    from funnelbot.i18n import Translator
    from funnelbot.listeners.context import error_message

    err = UserError(
        "stages.bad_shape", stage="proposal", field="name", expected="a mapping", got="text"
    )
    for lang in ("en", "zh"):
        text = error_message(Translator(lang), err)["text"]
        assert "“name”" in text, text
        assert "Deal name" not in text and "deal name" not in text and "商机名称" not in text

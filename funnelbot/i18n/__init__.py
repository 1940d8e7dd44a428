"""Messages in English and 简体中文: one catalogue per language, one lookup function.

Catalogues are `str.format` templates keyed by dotted names. Numbers, money and dates are
formatted with Babel (CLDR data) so each locale gets its own grouping and symbols.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from functools import lru_cache

from babel import Locale
from babel.numbers import format_decimal, parse_pattern

from funnelbot.i18n import en, zh

CATALOGUES: dict[str, dict[str, str]] = {"en": en.MESSAGES, "zh": zh.MESSAGES}
LANGUAGES = tuple(CATALOGUES)
BABEL_LOCALES = {"en": "en_US", "zh": "zh_Hans_CN"}
WHOLE_AMOUNT = parse_pattern("¤#,##0")  # whole amounts without ".00"


def language_of(locale: str | None, default: str = "en") -> str:
    """'zh-CN', 'zh_Hans', 'zh' -> 'zh'; 'en-GB' -> 'en'; unknown -> default."""
    if not locale:
        return default
    lang = locale.replace("_", "-").split("-")[0].lower()
    return lang if lang in CATALOGUES else default


class Translator:
    """Messages and formatted values for one language."""

    def __init__(self, lang: str, currency: str = "USD") -> None:
        self.lang = lang if lang in CATALOGUES else "en"
        self.currency = currency
        self.locale = BABEL_LOCALES[self.lang]
        # Babel's format_currency parses the locale and pattern on every call; a deal card
        # formats several amounts, so they are parsed once per translator here.
        self._babel_locale = Locale.parse(self.locale)
        self._money_pattern = self._babel_locale.currency_formats["standard"]

    def __call__(self, key: str, **params: object) -> str:
        template = CATALOGUES[self.lang].get(key) or CATALOGUES["en"].get(key)
        if template is None:
            raise KeyError(f"no message {key!r}")
        return template.format(**params) if params else template

    def has(self, key: str) -> bool:
        return key in CATALOGUES[self.lang]

    def money(self, amount: Decimal | int | float | None) -> str:
        if amount is None:
            return "—"
        value = Decimal(amount)
        whole = value == value.to_integral_value()
        pattern = WHOLE_AMOUNT if whole else self._money_pattern
        return pattern.apply(
            value, self._babel_locale, currency=self.currency, currency_digits=not whole
        )

    def number(self, value: int | float | Decimal) -> str:
        return format_decimal(value, locale=self.locale)

    def percent(self, ratio: float | None) -> str:
        return "—" if ratio is None else f"{ratio * 100:.0f}%"

    def date(self, day: dt.date | None) -> str:
        if day is None:
            return "—"
        if self.lang == "zh":
            return f"{day.year}年{day.month}月{day.day}日"
        return day.strftime("%a %d %b %Y")


@lru_cache(maxsize=16)
def translator(lang: str, currency: str = "USD") -> Translator:
    return Translator(lang, currency)

"""The funnel picture: a pure function from numbers to PNG bytes (matplotlib, Agg).

Uses `Figure()` directly, never pyplot, so it is safe in a server. Chinese stage names
need a CJK font: the first installed one of CJK_FONTS (or FUNNELBOT_CHART_FONT) is used,
and a single warning is logged when there is none (glyphs would show as boxes).
https://matplotlib.org/stable/gallery/user_interfaces/web_application_server_sgskip.html
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from matplotlib.figure import Figure
from matplotlib.patches import Polygon

logger = logging.getLogger(__name__)

CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Serif CJK SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "PingFang SC",
    "Microsoft YaHei",
    "SimHei",
)
WIDTH_PX, HEIGHT_PX, DPI = 1600, 1000, 100
COLOURS = ("#2E5EAA", "#3A78C2", "#4A90D9", "#69A7E4", "#8BBDEB", "#A9CFF0", "#C6E0F5")


@dataclass(frozen=True)
class FunnelBar:
    label: str
    deals: int
    amount: str  # already formatted for the reader's locale
    previous: int | None = None  # the same count a period earlier, for the comparison marker


@dataclass(frozen=True)
class FunnelChart:
    title: str
    subtitle: str
    bars: Sequence[FunnelBar]
    conversions: Sequence[str]  # between consecutive bars, formatted ("62%")
    previous_label: str = ""


@lru_cache(maxsize=1)
def font_family() -> list[str]:
    """Fonts to ask matplotlib for: a CJK-capable one first when one is installed."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    wanted = os.environ.get("FUNNELBOT_CHART_FONT")
    for name in ([wanted] if wanted else []) + list(CJK_FONTS):
        if name in installed:
            return [name, "DejaVu Sans"]
    logger.warning(
        "no CJK font found (tried %s); Chinese text in charts will not render. "
        "Install one, e.g. `apt-get install fonts-noto-cjk`.",
        ", ".join(CJK_FONTS),
    )
    return ["DejaVu Sans"]


def render_funnel(chart: FunnelChart) -> bytes:
    """A centred funnel: one trapezoid per stage, width by deal count, with counts,
    values, the conversion between stages and last period's count as a marker."""
    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, facecolor="white")
    family = font_family()
    ax = fig.add_axes((0.02, 0.04, 0.96, 0.8))
    ax.set_axis_off()
    fig.text(
        0.5, 0.94, chart.title, ha="center", va="center", fontsize=30, weight="bold", family=family
    )
    fig.text(
        0.5,
        0.885,
        chart.subtitle,
        ha="center",
        va="center",
        fontsize=18,
        color="#555555",
        family=family,
    )

    n = max(len(chart.bars), 1)
    peak = max([b.deals for b in chart.bars] + [b.previous or 0 for b in chart.bars] + [1])
    ax.set_xlim(-1.0, 1.0)
    ax.set_ylim(0, n)
    min_half = 0.08

    def half(count: int) -> float:
        return min_half + (0.62 - min_half) * count / peak

    for i, bar in enumerate(chart.bars):
        top, bottom = n - i - 0.08, n - i - 0.92
        upper = half(bar.deals)
        lower = half(chart.bars[i + 1].deals) if i + 1 < len(chart.bars) else upper * 0.85
        lower = min(lower, upper)
        ax.add_patch(
            Polygon(
                [(-upper, top), (upper, top), (lower, bottom), (-lower, bottom)],
                closed=True,
                facecolor=COLOURS[i % len(COLOURS)],
                edgecolor="white",
                linewidth=2,
            )
        )
        middle = (top + bottom) / 2
        ax.text(
            0,
            middle + 0.12,
            bar.label,
            ha="center",
            va="center",
            fontsize=22,
            color="white",
            weight="bold",
            family=family,
        )
        ax.text(
            0,
            middle - 0.2,
            f"{bar.deals}  ·  {bar.amount}",
            ha="center",
            va="center",
            fontsize=18,
            color="white",
            family=family,
        )
        if bar.previous is not None:
            ax.text(
                -0.66,
                middle,
                f"{chart.previous_label} {bar.previous}",
                ha="right",
                va="center",
                fontsize=16,
                color="#555555",
                family=family,
            )
        if i < len(chart.conversions):
            ax.text(
                0.68,
                bottom - 0.0,
                f"↓ {chart.conversions[i]}",
                ha="left",
                va="center",
                fontsize=20,
                color="#2E5EAA",
                weight="bold",
                family=family,
            )
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI, facecolor="white")
    return out.getvalue()

"""The self-contained HTML quality report a hospital data team reads in minutes: what is wrong, where, how
much, and the reconciled KPIs. Charts are SVG drawn here, so the file needs no network and no JavaScript."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cache
from html import escape
from importlib import resources
from typing import Any

from ._kpis import KpiReconciliation
from ._label import QualityCheck, QualityLabel
from ._mapping_coverage import DomainCoverage

MAX_FAILING_ROWS = 60


@dataclass(frozen=True)
class SystemRow:
    """One staged table's journey: read, quarantined, and how its rows were linked."""

    table: str
    rows_read: int
    quarantined: int
    linked: int = 0
    relinked: int = 0
    recovered: int = 0
    orphan: int = 0


def _bars(
    rows: list[tuple[str, float, str]], *, width: int = 640, unit: str = "", maximum: float | None = None
) -> str:
    """A horizontal bar chart as inline SVG: (label, value, colour) per bar."""
    if not rows:
        return ""
    top = maximum if maximum is not None else max(v for _, v, _ in rows) or 1.0
    label_w, bar_w, row_h = 190, width - 260, 22
    parts = [
        f'<svg width="{width}" height="{row_h * len(rows) + 8}" role="img" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, (label, value, colour) in enumerate(rows):
        y = 4 + i * row_h
        w = 0 if top == 0 else max(1.0, bar_w * value / top)
        parts.append(f'<text x="0" y="{y + 14}">{escape(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="14" fill="{colour}"/>')
        parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 14}">{value:,.1f}{escape(unit)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _stacked(rows: list[SystemRow], width: int = 640) -> str:
    """Per table, the share of rows linked, relinked, recovered, orphaned and quarantined (inline SVG)."""
    colours = (
        ("linked", "#3e8e41"),
        ("relinked", "#4c8bf5"),
        ("recovered", "#f0b429"),
        ("orphan", "#d64545"),
        ("quarantined", "#9aa5b1"),
    )
    label_w, bar_w, row_h = 190, width - 200, 22
    height = row_h * (len(rows) + 1) + 8
    parts = [f'<svg width="{width}" height="{height}" role="img" xmlns="http://www.w3.org/2000/svg">']
    for k, (name, colour) in enumerate(colours):
        lx = label_w + 90 * k
        parts.append(f'<rect x="{lx}" y="2" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 14}" y="11">{name}</text>')
    for i, r in enumerate(rows, 1):
        y = 4 + i * row_h
        total = max(1, r.rows_read)
        parts.append(f'<text x="0" y="{y + 14}">{escape(r.table)}</text>')
        x = float(label_w)
        for name, colour in colours:
            w = bar_w * getattr(r, name) / total
            if w > 0:
                parts.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="14" fill="{colour}"/>')
            x += w
    parts.append("</svg>")
    return "".join(parts)


@cache
def _template() -> Any:
    import jinja2

    text = resources.files("medspace.quality").joinpath("data/report.html.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(text)


def _fmt_num(value: float | None) -> str:
    if value is None:
        return "–"
    return (
        f"{value:,.0f}"
        if float(value).is_integer()
        else f"{value:,.4g}"
        if abs(value) < 1
        else f"{value:,.2f}"
    )


def _fmt_score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"


def render_report(
    label: QualityLabel,
    kpis: KpiReconciliation,
    checks: list[QualityCheck],
    systems: list[SystemRow],
    version: str,
    coverage: tuple[DomainCoverage, ...] = (),
) -> str:
    """The HTML report, one self-contained file."""
    failing = [c for c in checks if c.status in ("failed", "error")]
    failing.sort(key=lambda c: (c.status != "error", c.dimension, -(c.value or 0.0), c.name))
    by_source: dict[str, Counter[str]] = {}
    for c in checks:
        by_source.setdefault(c.source, Counter())[c.status] += 1
    dimension_chart = _bars(
        [
            (f"{d.name} {d.dimension}", d.score or 0.0, "#3e8e41" if (d.score or 0) >= 90 else "#f0b429")
            for d in label.dimensions
        ],
        unit="%",
        maximum=100.0,
    )
    return str(
        _template().render(
            label=label,
            kpis=kpis,
            failing=failing[:MAX_FAILING_ROWS],
            failing_more=max(0, len(failing) - MAX_FAILING_ROWS),
            systems=systems,
            by_source={
                k: {s: v.get(s, 0) for s in ("passed", "failed", "error", "not_applicable")}
                for k, v in sorted(by_source.items())
            },
            dimension_chart=dimension_chart,
            system_chart=_stacked(systems),
            coverage=coverage,
            coverage_chart=_bars(
                [
                    (
                        c.domain,
                        100.0 * (c.row_share or 0.0),
                        "#3e8e41" if (c.row_share or 0) >= 0.9 else "#f0b429",
                    )
                    for c in coverage
                    if c.status == "measured"
                ],
                unit="%",
                maximum=100.0,
            ),
            version=version,
            fmt_num=_fmt_num,
            fmt_score=_fmt_score,
        )
    )

"""The 年度体检报告 (annual check-up: one year against the targets and the previous year) and the 五年评估报告
(five-year evaluation: the trend over the period) of the core indicators: HTML from Jinja templates
(``templates/indicator_annual.html``, ``templates/indicator_evaluation.html``), a matplotlib chart per indicator
(CJK labels in WenQuanYi Zen Hei), PDF with WeasyPrint.
"""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime
from pathlib import Path

from lantu.processes.base import RunContext
from lantu.processes.report import FONT_FAMILY, _templates

CJK_FONT_FILES = ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
STATUS_COLOURS = {"达标": "#2e7d32", "预警": "#ef8f00", "未达标": "#c62828", None: "#607d8b"}
TITLES = {"annual": "年度体检报告", "five-year": "五年评估报告"}
_font_ready = False


def _matplotlib():
    global _font_ready
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import font_manager, pyplot

    if not _font_ready:
        names = []
        for path in CJK_FONT_FILES:
            if Path(path).exists():
                font_manager.fontManager.addfont(path)
                names.append(font_manager.FontProperties(fname=path).get_name())
        matplotlib.rcParams["font.sans-serif"] = [*names, "DejaVu Sans"]
        matplotlib.rcParams["font.family"] = "sans-serif"
        matplotlib.rcParams["axes.unicode_minus"] = False
        _font_ready = True
    return pyplot


def _png(fig) -> str:
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def chart(name: str, unit: str, years: list[int], values: list[float | None], target: float | None,
          status: str | None) -> str:
    """One indicator: its values by year (bars for two years, a line for more) and the target as a dashed line."""
    plt = _matplotlib()
    fig, ax = plt.subplots(figsize=(4.2, 2.5))
    try:
        xs = [str(y) for y in years]
        ys = [v if v is not None else 0.0 for v in values]
        colour = STATUS_COLOURS.get(status, "#607d8b")
        if len(years) <= 2:
            ax.bar(xs, ys, color=["#90a4ae"] * (len(xs) - 1) + [colour], width=0.5)
        else:
            ax.plot(xs, ys, marker="o", color=colour)
        if target is not None:
            ax.axhline(target, color="#333333", linestyle="--", linewidth=1)
            ax.annotate(f"目标 {target:,.2f}", xy=(0, target), xycoords=("axes fraction", "data"), fontsize=7,
                        xytext=(2, 3), textcoords="offset points")
        present = [v for v in ys + ([target] if target is not None else [])]
        lo, hi = min(present), max(present)
        pad = (hi - lo) * 0.25 or abs(hi) * 0.05 or 1.0
        ax.set_ylim(max(0.0, lo - pad) if lo >= 0 else lo - pad, hi + pad)
        ax.set_title(f"{name}（{unit}）{'：' + status if status else ''}", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(axis="y", alpha=0.3)
        return _png(fig)
    finally:
        plt.close(fig)


def render(ctx: RunContext, cat, doc: dict, kind: str) -> tuple[str, bytes]:
    from weasyprint import HTML

    rows = doc["indicators"]
    history = doc["history"]
    year = doc["year"]
    by_year: dict[str, dict[int, dict]] = {}
    for r in [*history, *rows]:
        by_year.setdefault(r["indicator"], {})[r["year"]] = r
    charts = []
    for r in rows:
        per = by_year[r["indicator"]]
        if kind == "annual":
            earlier = sorted(y for y in per if y < year)
            prev_year = r.get("previous_year") or (earlier[-1] if earlier else year - 1)
            ys, vals = ([prev_year, year], [r["previous"], r["value"]]) if r.get("previous") is not None \
                else ([year], [r["value"]])
        else:
            ys = sorted(per)
            vals = [per[y]["value"] if y != year else r["value"] for y in ys]
        charts.append({"indicator": r["indicator"],
                       "image": chart(r["name_zh"], r["unit"], ys, vals, r["target"], r["status"])})
    span_years = sorted({y for per in by_year.values() for y in per})
    trend = [{"row": r, "values": [by_year[r["indicator"]].get(y, {}).get("value") for y in span_years]}
             for r in rows]
    template = "indicator_annual.html" if kind == "annual" else "indicator_evaluation.html"
    html = _templates.get_template(template).render(
        d=doc, rows=rows, charts=charts, trend=trend, years=span_years, title=TITLES[kind], font_family=FONT_FAMILY,
        made=datetime.now(UTC).astimezone().strftime("%Y-%m-%d %H:%M"), job_id=ctx.job_id or "",
        srid=ctx.settings.planar_srid, plan=cat.plan,
        alerts=[r for r in rows if r["status"] in ("预警", "未达标")])
    return html, HTML(string=html).write_pdf()

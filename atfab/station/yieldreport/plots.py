"""The yield report's plots, drawn by matplotlib as inline SVG from the figures of
:func:`~atfab.station.yieldreport.stats.yield_figures` (the numbers ``--json`` prints, nothing else).

matplotlib is the optional ``report`` extra (``pip install 'atfab[report]'``); without it
:func:`plots` raises :class:`PlottingUnavailable` (exit 3, one line). Figures are built with the
object API (no pyplot, no global figure state); each SVG gets its own id salt so several can live
in one HTML page, and no date, so the same figures give the same bytes.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

from ...core.errors import DeviceError

COLOURS = {"PASS": "#1a7f37", "FAIL": "#cf222e", "ERROR": "#bf8700", "ABORTED": "#6e7781"}


class PlottingUnavailable(DeviceError):
    """matplotlib is not installed."""


def _matplotlib() -> Any:
    try:
        import matplotlib  # noqa: PLC0415 - optional and slow: only `atfab report html` draws
        from matplotlib.figure import Figure  # noqa: PLC0415
    except ImportError:
        raise PlottingUnavailable("atfab report html draws its plots with matplotlib: "
                                  "pip install 'atfab[report]' (or print the figures with --json)") from None
    return matplotlib, Figure


def _svg(mpl: Any, fig: Any, salt: str) -> str:
    out = io.StringIO()
    with mpl.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = out.getvalue()
    return text[text.index("<svg"):]


def _pareto(Figure: Any, checks: list[dict[str, Any]]) -> Any:
    top = checks[:15]
    fig = Figure(figsize=(8, 3.6))
    ax = fig.add_subplot()
    names = [c["check"] for c in top]
    ax.bar(range(len(top)), [c["count"] for c in top], color=COLOURS["FAIL"])
    ax.set_xticks(range(len(top)), names, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("FAIL attempts")
    ax2 = ax.twinx()
    ax2.plot(range(len(top)), [c["cumulative"] * 100 for c in top], color="#24292f", marker="o", markersize=3)
    ax2.set_ylim(0, 105)
    ax2.set_ylabel("cumulative %")
    ax.set_title("Failing checks (Pareto)", fontsize=10)
    return fig


def _throughput(Figure: Any, tp: dict[str, Any]) -> Any:
    buckets = tp["buckets"]
    fig = Figure(figsize=(8, 3.2))
    ax = fig.add_subplot()
    xs = [datetime.fromisoformat(b["start"]) for b in buckets]
    scale = 3600 / tp["bucket_s"]
    width = tp["bucket_s"] / 86400 * 0.9
    bottom = [0.0] * len(buckets)
    for k in ("PASS", "FAIL", "ERROR"):
        vals = [b[k] * scale for b in buckets]
        ax.bar(xs, vals, width=width, bottom=bottom, color=COLOURS[k], label=k, align="edge")
        bottom = [a + b for a, b in zip(bottom, vals)]
    ax.set_ylabel("units per hour")
    ax.legend(fontsize=8, loc="upper left", ncols=3)
    ax.set_title(f"Units per hour over time ({tp['bucket_s'] // 60} min buckets, UTC)", fontsize=10)
    fig.autofmt_xdate()
    return fig


def _yield_by(Figure: Any, rows: list[dict[str, Any]], title: str) -> Any:
    rows = [r for r in rows if r["first_pass_yield"] is not None or r["attempt_pass_rate"] is not None]
    fig = Figure(figsize=(8, 0.6 + 0.28 * max(len(rows), 2)))
    ax = fig.add_subplot()
    ys = range(len(rows))
    fpy = [(r["first_pass_yield"] or 0) * 100 for r in rows]
    rate = [(r["attempt_pass_rate"] or 0) * 100 for r in rows]
    ax.barh([y + 0.2 for y in ys], fpy, height=0.4, color=COLOURS["PASS"], label="first-pass yield")
    ax.barh([y - 0.2 for y in ys], rate, height=0.4, color="#8cc59b", label="attempt pass rate")
    ax.set_yticks(list(ys), [r["key"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    low = min(fpy + rate + [100.0])
    ax.set_xlim(max(0.0, low - 5 - (100 - low) * 0.2), 100)
    ax.set_xlabel("%")
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(title, fontsize=10)
    return fig


def _step_times(Figure: Any, steps: list[dict[str, Any]]) -> Any:
    fig = Figure(figsize=(8, 0.8 + 0.32 * max(len(steps), 2)))
    ax = fig.add_subplot()
    stats = [{"label": s["step"], "med": s["p50"], "q1": s["p25"], "q3": s["p75"], "whislo": s["p5"],
              "whishi": s["p95"], "mean": s["mean"], "fliers": []} for s in steps]
    ax.bxp(stats, orientation="horizontal", showmeans=True, patch_artist=True,
           boxprops={"facecolor": "#ddf4ff"}, medianprops={"color": "#0969da"})
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("seconds (log scale; box: p25..p75, whiskers: p5..p95, triangle: mean)")
    ax.set_title("Step times (steps that ended ok)", fontsize=10)
    return fig


def plots(figures: dict[str, Any]) -> dict[str, str]:
    """Inline SVG documents by name: ``pareto``, ``throughput``, ``by_port``, ``by_station``, ``steps``
    (those the figures have data for)."""
    mpl, Figure = _matplotlib()
    out: dict[str, str] = {}
    if figures["failing_checks"]:
        out["pareto"] = _svg(mpl, _pareto(Figure, figures["failing_checks"]), "pareto")
    if figures["throughput"]["buckets"]:
        out["throughput"] = _svg(mpl, _throughput(Figure, figures["throughput"]), "throughput")
    for key, title in (("by_port", "Yield per port"), ("by_station", "Yield per station"),
                       ("by_recipe", "Yield per recipe")):
        if figures[key]:
            out[key] = _svg(mpl, _yield_by(Figure, figures[key], title), key)
    if figures["step_times"]:
        out["steps"] = _svg(mpl, _step_times(Figure, figures["step_times"]), "steps")
    return out


__all__ = ["plots", "PlottingUnavailable", "COLOURS"]

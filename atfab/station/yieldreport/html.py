"""The yield report as one self-contained HTML file: tables of the figures and their plots
(inline SVG), inline CSS, no script, nothing fetched from anywhere."""

from __future__ import annotations

from html import escape
from typing import Any

from ...core.errors import OUTCOMES
from .plots import COLOURS, plots

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5rem auto; max-width: 64rem;
       color: #1f2328; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; }
.meta { color: #57606a; }
.tiles { display: flex; flex-wrap: wrap; gap: .8rem; margin: 1rem 0; }
.tile { border: 1px solid #d0d7de; border-radius: .5rem; padding: .6rem 1rem; min-width: 9rem; }
.tile b { display: block; font-size: 1.8rem; } .tile span { color: #57606a; font-size: .85rem; }
table { border-collapse: collapse; font-size: .88rem; margin: .5rem 0; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #d0d7de; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.plot svg { max-width: 100%; height: auto; }
"""


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v * 100:.1f} %"


def _table(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _groups(rows: list[dict[str, Any]], what: str) -> str:
    return _table([what, "attempts", *OUTCOMES, "attempt pass rate", "units first tested", "first-pass yield"],
                  [[r["key"], r["attempts"], *(r["counts"][k] for k in OUTCOMES), _pct(r["attempt_pass_rate"]),
                    r["units"], _pct(r["first_pass_yield"])] for r in rows])


def _plot(svgs: dict[str, str], name: str) -> str:
    return f'<div class="plot" id="plot-{name}">{svgs[name]}</div>' if name in svgs else ""


def render_html(figures: dict[str, Any], *, title: str = "atfab yield report", sources: list[str] | None = None) -> str:
    """The report document of ``figures`` (:func:`~atfab.station.yieldreport.stats.yield_figures`)."""
    svgs = plots(figures)
    w, fp, fin, c = figures["window"], figures["first_pass_yield"], figures["final_yield"], figures["counts"]
    span = f"{w['first'] or '–'} .. {w['last'] or '–'}"
    asked = ", ".join(x for x in (f"since {w['since']}" if w["since"] else "",
                                  f"until {w['until']}" if w["until"] else "") if x) or "all reports"
    tiles = [("first-pass yield", _pct(fp["yield"]), f"{fp['passed']} of {fp['units']} units"),
             ("final yield", _pct(fin["yield"]), f"{fin['passed']} of {fin['units']} units"),
             ("attempts", str(figures["attempts"]), f"{figures['units']} units, {figures['retested_units']} first seen before the window"),
             *[(k, str(c[k]), "attempts") for k in OUTCOMES]]
    tile_html = "".join(f'<div class="tile"><span>{escape(a)}</span><b style="color:{COLOURS.get(a, "#1f2328")}">'
                        f"{escape(b)}</b><span>{escape(s)}</span></div>" for a, b, s in tiles)
    pareto = _table(["failing check", "FAIL attempts", "share", "cumulative"],
                    [[p["check"], p["count"], _pct(p["share"]), _pct(p["cumulative"])] for p in figures["failing_checks"]])
    errors = _table(["step that broke", "ERROR attempts"], [[e["step"], e["count"]] for e in figures["error_steps"]])
    steps = _table(["step", "count", "mean s", "p50 s", "p90 s", "p99 s", "max s"],
                   [[s["step"], s["count"], s["mean"], s["p50"], s["p90"], s["p99"], s["max"]]
                    for s in figures["step_times"]])
    tp = figures["throughput"]
    uph = _table(["bucket start (UTC)", "PASS", "FAIL", "ERROR", "units/h"],
                 [[b["start"], b["PASS"], b["FAIL"], b["ERROR"], b["units_per_hour"]] for b in tp["buckets"]])
    unit_s = figures["pass_unit_seconds"]
    unit_line = (f"<p>Time per PASS unit: median {unit_s['p50']} s, p90 {unit_s['p90']} s, "
                 f"max {unit_s['max']} s over {unit_s['count']} units.</p>" if unit_s else "")
    src = f"<p class=\"meta\">Reports: {escape(', '.join(sources))}</p>" if sources else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<meta name="generator" content="atfab report html ({escape(figures['schema'])})">
<style>{_CSS}</style></head>
<body>
<h1>{escape(title)}</h1>
<p class="meta">{escape(asked)}: reports started {escape(span)}</p>{src}
<div class="tiles">{tile_html}</div>
<h2>Yield per station</h2>{_plot(svgs, "by_station")}{_groups(figures["by_station"], "station")}
<h2>Yield per port</h2>{_plot(svgs, "by_port")}{_groups(figures["by_port"], "station:port")}
<h2>Yield per recipe</h2>{_plot(svgs, "by_recipe")}{_groups(figures["by_recipe"], "recipe")}
<h2>Failing checks</h2>{_plot(svgs, "pareto")}{pareto}
<h2>Errors (station, link or tool)</h2>{errors}
<h2>Units per hour</h2>{_plot(svgs, "throughput")}{uph}
<h2>Step times</h2>{_plot(svgs, "steps")}{steps}{unit_line}
</body></html>
"""


__all__ = ["render_html"]

"""The HTML report of `edgekit bench`: one self-contained file, plots as inline SVG.

No network at view time: no scripts, fonts or styles are loaded from anywhere. matplotlib
draws the latency distribution and the quality-vs-latency trade-off; every user string
is escaped.
"""
from __future__ import annotations

import html
import io
import math
import re
from pathlib import Path
from typing import Any

from edgekit.benchmarks.measurement import Report, Result
from edgekit.fsutil import atomic_write_text
from edgekit.reports import (
    HTML_STATUS,
    MISSING,
    TABLE_COLUMNS,
    _row,
    _short,
    clean,
    error_line,
    fmt_num,
    fmt_value,
    is_number,
    issues,
    quality,
    status,
)


def write_html(report: Report, path: str | Path) -> Path:
    """One self-contained HTML file: summary table, issues, plots as inline SVG, host and settings."""
    path = Path(path)
    atomic_write_text(path, html_report(report))
    return path


def html_report(report: Report) -> str:
    e = html.escape
    strict = bool(report.settings.get("strict"))
    found = issues(report)
    rows = []
    for result in report.results:
        cells = _row(result, strict)
        state = cells[-1]
        tds = "".join(f'<td class="{"num" if 3 <= i <= 6 else ""}">{e(c)}</td>' for i, c in enumerate(cells[:-1]))
        rows.append(f'<tr class="{state.replace(" ", "-")}">{tds}<td class="verdict">{e(HTML_STATUS[state])}</td></tr>')
    if not rows:
        rows.append(f'<tr><td colspan="{len(TABLE_COLUMNS)}">no artifacts</td></tr>')
    head = "".join(f"<th>{e(c)}</th>" for c in TABLE_COLUMNS)
    lists = "".join(
        f'<section class="{cls}"><h3>{e(title)}</h3><ul>{"".join(f"<li>{e(i)}</li>" for i in items)}</ul></section>'
        for cls, title, items in (
            ("failed", "Failed budgets", found.failed),
            ("errors", "Errors", found.errors),
            ("skipped", "Not measured", found.not_measured),
            ("notes", "Notes", found.notes),
        )
        if items
    )
    plots = _plots(report)
    overall = '<span class="badge pass">PASSED</span>' if report.passed else '<span class="badge fail">FAILED</span>'
    return _PAGE.format(
        title=e(f"edgekit bench report {report.created}"),
        overall=overall,
        created=e(report.created),
        version=e(report.edgekit_version),
        strict=" (strict)" if strict else "",
        count=len(report.results),
        head=head,
        rows="\n".join(rows),
        lists=lists,
        plots=plots,
        details="\n".join(_details(r) for r in report.results),
        host=_kv_table(report.host),
        settings=_kv_table(report.settings),
    )


def _kv_table(data: dict[str, Any]) -> str:
    """Key/value rows; a nested dict (host cpu, runtimes) becomes one row per inner key."""
    if not data:
        return "<p>none recorded</p>"
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            flat.update({f"{key} {k}": v for k, v in value.items()})
        else:
            flat[key] = value
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_short(v)) or MISSING}</td></tr>" for k, v in flat.items())
    return f'<table class="kv">{rows}</table>'


def _facts(data: dict[str, Any]) -> str:
    """Many short key/value pairs as a grid that wraps into columns."""
    items = "".join(f"<div><dt>{html.escape(str(k))}</dt><dd>{html.escape(_short(v)) or MISSING}</dd></div>" for k, v in data.items())
    return f'<dl class="facts">{items}</dl>'


def _details(result: Result) -> str:
    """Everything measured for one artifact, folded away (<details> needs no JavaScript)."""
    m = result.measurement
    facts: dict[str, Any] = {"path": m.path, "format": m.format, "runtime": m.runtime, "device requested": m.device_requested}
    facts.update({f"backend {k}": v for k, v in m.backend.items()})
    for key in ("load_ms", "first_inference_ms", "peak_memory_mb", "model_memory_mb", "size_mb"):
        facts[key] = fmt_num(getattr(m, key))
    if m.latency:
        lat = m.latency
        for key in ("runs", "mean_ms", "std_ms", "min_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms", "throughput_ips", "cv"):
            value = getattr(lat, key)
            facts[f"latency {key}"] = value if key == "runs" else fmt_num(value)
    facts.update({f"metric {k}": fmt_num(v, 4) for k, v in m.metrics.items()})
    facts.update({f"reference {k}": fmt_num(v, 4) for k, v in m.reference_metrics.items()})
    facts.update({f"fidelity {k}": fmt_value(v, MISSING) for k, v in (m.fidelity or {}).items()})
    facts.update({f"not measured: {k}": v for k, v in m.skipped.items()})
    verdicts = "".join(
        f'<tr class="{v.status.replace(" ", "-")}"><td>{html.escape(v.budget)}</td><td class="num">{html.escape(fmt_value(v.limit))}</td>'
        f'<td class="num">{html.escape(fmt_value(v.measured, MISSING))}</td><td>{html.escape(v.status)}</td><td>{html.escape(v.reason)}</td></tr>'
        for v in result.verdicts
    )
    budget_table = (
        f'<table class="budgets"><tr><th>budget</th><th>limit</th><th>measured</th><th>status</th><th>reason</th></tr>{verdicts}</table>'
        if verdicts
        else "<p>no budgets</p>"
    )
    error = f"<pre>{html.escape(clean(m.error))}</pre>" if m.error else ""
    matrix = ""
    if m.confusion_matrix:
        body = "".join("<tr>" + "".join(f'<td class="num">{int(c)}</td>' for c in row) + "</tr>" for row in m.confusion_matrix)
        matrix = f'<p>confusion matrix (rows: true class, columns: predicted)</p><table class="matrix">{body}</table>'
    return (
        f"<details><summary>{html.escape(m.name)} — {html.escape(status(result))}</summary>"
        f"{error}{budget_table}{_facts({k: v for k, v in facts.items() if v is not None})}{matrix}</details>"
    )


def _plots(report: Report) -> str:
    """The two figures as inline SVG, or a line saying why there is nothing to plot."""
    if not report.results:
        return "<p>Nothing was benchmarked.</p>"
    import matplotlib

    with matplotlib.rc_context(_RC):
        latency = _latency_figure(report)
        tradeoff = _tradeoff_figure(report)
    parts = [
        "<h2>Latency distribution</h2>",
        latency,
        '<p class="caption">Box: p25–p75 with the median; whiskers: p1–p99; dots: slower or faster runs beyond them. '
        "Vertical marks: latency budget limits, red where the budget failed. Red names failed.</p>",
        "<h2>Quality vs latency</h2>",
        tradeoff,
    ]
    return "\n".join(parts)


_RC = {
    "svg.fonttype": "none",  # text stays text: small files, the browser's sans-serif font
    "svg.hashsalt": "edgekit",  # stable element ids
    "font.family": ["DejaVu Sans", "sans-serif"],
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
}

_PASS, _FAIL, _WARN = "#2b6cb0", "#c53030", "#b7791f"


def _svg(fig) -> str:
    """`fig` as an inline <svg> element: no XML prolog, no DOCTYPE, no metadata."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    return f'<figure class="plot">{text}</figure>'


def _latency_figure(report: Report) -> str:
    from matplotlib.figure import Figure

    strict = bool(report.settings.get("strict"))
    results = report.results
    n = len(results)
    fig = Figure(figsize=(11, 0.55 * n + 1.4))
    ax = fig.add_subplot()
    positions = list(range(n, 0, -1))  # first artifact on top
    stats, measured = [], []
    for pos, result in zip(positions, results):
        lat = result.measurement.latency
        if lat is None or not is_number(lat.p50_ms):
            continue
        stats.append(_box_stats(result))
        measured.append((pos, result))
    if stats:
        boxes = ax.bxp(stats, positions=[p for p, _ in measured], orientation="horizontal", widths=0.55,
                       patch_artist=True, showfliers=True, flierprops=dict(marker=".", markersize=2, alpha=0.5),
                       medianprops=dict(color="black"))
        for patch, (_, result) in zip(boxes["boxes"], measured):
            failed = status(result, strict) == "fail"
            patch.set(facecolor=_FAIL if failed else _PASS, alpha=0.35, edgecolor=_FAIL if failed else _PASS)
        lows = [s["whislo"] for s in stats if s["whislo"] > 0]
        highs = [s["whishi"] for s in stats]
        if lows and max(highs) / min(lows) > 20:
            _log_x(ax)
        for pos, result in measured:  # budget limits on latency figures
            for v in result.verdicts:
                if v.budget.startswith("latency_") and is_number(v.limit):
                    colour = _FAIL if v.status == "fail" else "#718096"
                    ax.plot([v.limit, v.limit], [pos - 0.38, pos + 0.38], color=colour, lw=2.2, solid_capstyle="butt")
                    ax.annotate(v.budget.removeprefix("latency_").removesuffix("_ms") + " limit", (v.limit, pos + 0.38),
                                xytext=(0, 1), textcoords="offset points", ha="center", va="bottom",
                                fontsize=7, color=colour, parse_math=False)
    else:
        ax.text(0.5, 0.5, "no latency was measured", transform=ax.transAxes, ha="center", va="center", color="#718096")
        ax.set_xticks([])
    done = {p for p, _ in measured}
    for pos, result in zip(positions, results):
        if pos in done:
            continue
        m = result.measurement
        why = error_line(m.error, 90) if m.error else m.skipped.get("latency") or "not measured"
        label = f"{'error' if m.error else 'not measured'}: {why}"
        ax.text(0.01, pos, label, transform=ax.get_yaxis_transform(), va="center", fontsize=8.5,
                style="italic", color=_WARN if m.error else "#718096", parse_math=False)
    ax.set_yticks(positions, [r.measurement.name for r in results], parse_math=False)
    for tick, result in zip(ax.get_yticklabels(), results):
        state = status(result, strict)
        if state != "pass":
            tick.set_color(_FAIL if state in ("fail", "error") else _WARN)
    ax.set_ylim(0.4, n + 0.6)
    ax.set_xlabel("latency per inference (ms)")
    ax.grid(axis="y", visible=False)
    fig.tight_layout()
    return _svg(fig)


def _log_x(ax) -> None:
    """A log x scale labelled 0.1, 1, 10 (not 10^-1, 10^0, 10^1)."""
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _box_stats(result: Result) -> dict[str, Any]:
    """bxp() statistics: from the raw samples or the kept quantiles, else from the percentiles."""
    import numpy as np

    lat = result.measurement.latency
    samples = np.asarray([s for s in lat.samples_ms if is_number(s)], dtype=np.float64)
    q = lat.quantiles_ms
    if not lat.all_samples and all(is_number(q.get(k)) for k in ("p1", "p25", "p50", "p75", "p99")):
        # A bounded sample (the default): the quantiles and outliers were computed from every timing.
        return dict(med=q["p50"], q1=q["p25"], q3=q["p75"], whislo=q["p1"], whishi=q["p99"],
                    fliers=np.asarray(lat.outliers_ms, dtype=np.float64), label="")
    if samples.size:
        p1, q1, med, q3, p99 = np.percentile(samples, [1, 25, 50, 75, 99])
        fliers = np.sort(samples[(samples < p1) | (samples > p99)])
        if fliers.size > 200:  # keep the SVG small: an even selection of the outliers
            fliers = fliers[np.linspace(0, fliers.size - 1, 200).astype(int)]
        return dict(med=med, q1=q1, q3=q3, whislo=p1, whishi=p99, fliers=fliers, label="")
    med = float(lat.p50_ms)
    low, high = (float(v) if is_number(v) else med for v in (lat.min_ms, lat.p99_ms))
    q3 = float(lat.p90_ms) if is_number(lat.p90_ms) else med  # no quartiles kept: the box ends at p90
    return dict(med=med, q1=med, q3=q3, whislo=low, whishi=high, fliers=[], label="")


def _tradeoff_figure(report: Report) -> str:
    """Accuracy (or cosine fidelity without labels) against p50 latency; area ∝ model size."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter, ScalarFormatter

    strict = bool(report.settings.get("strict"))
    timed = [r for r in report.results if r.measurement.latency and is_number(r.measurement.latency.p50_ms)]
    use_accuracy = any(is_number(r.measurement.metrics.get("accuracy")) for r in timed)
    metric = "accuracy" if use_accuracy else "cosine"
    points, left_out = [], []
    for result in report.results:
        m = result.measurement
        q = quality(m)
        if result not in timed:
            left_out.append(f"{m.name} (latency not measured)")
        elif q is None or q[0] != metric:
            left_out.append(f"{m.name} (no {metric})")
        else:
            points.append((float(m.latency.p50_ms), q[1], m.size_mb if is_number(m.size_mb) else None, result))
    caption = (
        "Up and to the left is better. Marker area is proportional to model size; dashed line: the best trade-offs "
        "(no other artifact is both faster and more accurate). Red: failed a budget."
    )
    if left_out:
        caption += " Not in the plot: " + "; ".join(left_out) + "."
    if not points:
        return f'<p class="caption">No artifact has both latency and {metric}. {html.escape(caption)}</p>'

    fig = Figure(figsize=(11, 5.5))
    ax = fig.add_subplot()
    sizes = [s for _, _, s, _ in points if s is not None and s > 0]
    biggest = max(sizes) if sizes else 1.0
    areas = []
    for x, y, size, result in points:
        failed = status(result, strict) in ("fail", "error")
        area = 40 + 1200 * (size / biggest) if size else 40
        areas.append(area)
        colour = _FAIL if failed else _PASS
        ax.scatter([x], [y], s=area, color=colour, alpha=0.45, edgecolors=colour, linewidths=1.5, zorder=3)
        if failed:
            ax.scatter([x], [y], s=40, marker="x", color=_FAIL, zorder=4)
    front = _pareto([(x, y) for x, y, _, _ in points])
    if len(front) > 1:
        ax.plot(*zip(*front), ls="--", color="#718096", lw=1, drawstyle="steps-post", zorder=2)
    xs = [p[0] for p in points]
    if min(xs) > 0 and max(xs) / min(xs) > 10:
        _log_x(ax)
    ax.margins(x=0.2, y=0.25)
    if metric == "accuracy":
        low, high = ax.get_ylim()
        decimals = 0 if high - low >= 0.05 else 1 if high - low >= 0.005 else 2
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1, decimals=decimals))
        ax.set_ylabel("accuracy")
    else:
        formatter = ScalarFormatter(useOffset=False)
        ax.yaxis.set_major_formatter(formatter)
        ax.set_ylabel("cosine similarity to the reference")
    ax.set_xlabel("p50 latency (ms)")
    for size in _size_legend(biggest) if sizes else []:
        ax.scatter([], [], s=40 + 1200 * size / biggest, color="#a0aec0", alpha=0.5, label=f"{fmt_num(size, 2)} MB")
    if sizes:
        ax.legend(title="model size", loc="upper left", bbox_to_anchor=(1.01, 1), labelspacing=2.2, borderpad=1.2,
                  handletextpad=1.5, frameon=False, fontsize=8, title_fontsize=8)
    labels = []
    fig.tight_layout()
    for (x, y, _, result), area in zip(points, areas):
        failed = status(result, strict) in ("fail", "error")
        name = result.measurement.name + (" ✗" if failed else "")
        right_half = ax.transAxes.inverted().transform(ax.transData.transform((x, y)))[0] > 0.6
        clear = 0.75 * math.sqrt(area / math.pi) + 3  # points: just outside the marker, up and to the side
        labels.append(ax.annotate(name, (x, y), xytext=(-clear if right_half else clear, clear * 0.7), textcoords="offset points",
                                  ha="right" if right_half else "left", fontsize=8.5,
                                  color=_FAIL if failed else "#1a202c", parse_math=False, zorder=5))
    fig.tight_layout()
    _spread_labels(fig, labels)
    return _svg(fig) + f'<p class="caption">{html.escape(caption)}</p>'


def _pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both latency (lower) and quality (higher)."""
    front, best = [], -math.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def _size_legend(biggest: float) -> list[float]:
    """Two or three round sizes for the marker-size legend."""
    exponent = math.floor(math.log10(biggest)) if biggest > 0 else 0
    top = round(biggest / 10**exponent) * 10**exponent or biggest
    return sorted({top, top / 4}) if top / 4 > 0 else [top]


def _spread_labels(fig, labels: list) -> None:
    """Move point labels down, in steps of one line, until none overlaps another."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    placed = []
    for label in labels:
        dx, dy = label.xyann
        for _ in range(12):
            box = label.get_window_extent(renderer).expanded(1.02, 1.15)
            if not any(box.overlaps(other) for other in placed):
                break
            dy -= box.height * 72 / fig.dpi
            label.xyann = (dx, dy)
        placed.append(label.get_window_extent(renderer))


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
  body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
         color: #1a202c; margin: 2rem auto; max-width: 1200px; padding: 0 1rem; line-height: 1.4; }}
  h1 {{ font-size: 1.5rem; margin-bottom: 0.2rem; }}
  h2 {{ font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #e2e8f0; padding-bottom: 0.2rem; }}
  h3 {{ font-size: 1rem; margin-bottom: 0.3rem; }}
  .meta {{ color: #4a5568; font-size: 0.9rem; }}
  .badge {{ padding: 0.1rem 0.5rem; border-radius: 4px; color: white; font-weight: 600; font-size: 0.9rem; }}
  .badge.pass {{ background: #2f855a; }}
  .badge.fail {{ background: #c53030; }}
  table {{ border-collapse: collapse; font-size: 0.9rem; }}
  th, td {{ border: 1px solid #e2e8f0; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }}
  th {{ background: #f7fafc; }}
  td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
  table.summary {{ width: 100%; }}
  tr.fail td, tr.error td {{ background: #fff5f5; }}
  tr.not-measured td {{ background: #fffff0; }}
  td.verdict {{ white-space: nowrap; }}
  tr.pass td.verdict {{ color: #2f855a; font-weight: 600; }}
  tr.fail td.verdict, tr.error td.verdict {{ color: #c53030; font-weight: 600; }}
  tr.not-measured td.verdict {{ color: #975a16; font-weight: 600; }}
  table.kv th {{ font-weight: normal; color: #4a5568; }}
  section.failed h3, section.errors h3 {{ color: #c53030; }}
  section.skipped h3 {{ color: #975a16; }}
  figure.plot {{ margin: 0; }}
  figure.plot svg {{ width: 100%; max-width: 1100px; height: auto; }}
  .caption {{ color: #4a5568; font-size: 0.85rem; }}
  details {{ margin: 0.4rem 0; }}
  details table {{ margin: 0.4rem 0; }}
  summary {{ cursor: pointer; font-weight: 600; }}
  dl.facts {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 0.1rem 1.5rem;
             font-size: 0.85rem; margin: 0.5rem 0; }}
  dl.facts div {{ display: flex; gap: 0.5rem; border-bottom: 1px solid #edf2f7; padding: 0.1rem 0; }}
  dl.facts dt {{ color: #4a5568; min-width: 9.5rem; }}
  dl.facts dd {{ margin: 0; overflow-wrap: anywhere; }}
  pre {{ background: #f7fafc; padding: 0.5rem; overflow-x: auto; font-size: 0.8rem; }}
</style>
</head>
<body>
<h1>edgekit bench {overall}</h1>
<p class="meta">{count} artifacts · {created} · edgekit {version}{strict}</p>
<table class="summary">
<thead><tr>{head}</tr></thead>
<tbody>
{rows}
</tbody>
</table>
{lists}
{plots}
<h2>Artifacts</h2>
{details}
<h2>Host</h2>
{host}
<h2>Settings</h2>
{settings}
</body>
</html>
"""

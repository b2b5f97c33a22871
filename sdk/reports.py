"""Report writers for `edgekit bench`: JSON, Markdown, JUnit XML, HTML and the console table.

Every writer reads the same `Report` (benchmarks/measurement.py). A figure that was not
measured is None there and prints as "—" here, with its reason listed below the table:
no writer ever prints a number for a missing or NaN figure. rich and matplotlib are
imported inside the functions that use them, so `import edgekit.reports` stays light.
"""
from __future__ import annotations

import html
import io
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.benchmarks.measurement import Measurement, Report, Result, Verdict
from edgekit.fsutil import atomic_write_text

MISSING = "—"  # what a figure that was not measured prints as

STATUS_ICON = {"pass": "✅ pass", "fail": "❌ fail", "error": "⚠️ error", "not measured": "⚠️ not measured"}
HTML_STATUS = {"pass": "✓ pass", "fail": "✗ fail", "error": "⚠ error", "not measured": "⚠ not measured"}  # no emoji font needed
STATUS_STYLE = {"pass": "bold green", "fail": "bold red", "error": "bold red", "not measured": "bold yellow"}
TABLE_COLUMNS = ("artifact", "precision", "backend · device", "p50 ms", "p90 ms", "peak MB", "size MB", "accuracy / fidelity", "verdict")


# ---------------------------------------------------------------- formatting


def is_number(value: Any) -> bool:
    """True for a finite real number (not None, NaN, inf or a bool)."""
    if value is None or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def fmt_num(value: Any, digits: int = 3, missing: str = MISSING) -> str:
    """`value` with at least `digits` significant digits and no exponent; `missing` when absent.

    3.2 -> "3.20", 0.00412 -> "0.00412", 1534.2 -> "1534".
    """
    if not is_number(value):
        return missing
    v = float(value)
    if v == 0:
        return "0"
    decimals = min(6, max(0, digits - 1 - math.floor(math.log10(abs(v)))))
    return f"{v:.{decimals}f}"


def fmt_value(value: Any, missing: str = "not measured") -> str:
    """A budget limit or measured value as the user would write it: 3.2, 1.0, 0.99987."""
    if not is_number(value):
        return missing
    text = f"{float(value):.6g}"
    return text if any(c in text for c in ".e") else text + ".0"


def quality(m: Measurement) -> tuple[str, float] | None:
    """The figure a reader judges quality by: accuracy with labels, else cosine fidelity."""
    if is_number(m.metrics.get("accuracy")):
        return "accuracy", float(m.metrics["accuracy"])
    if m.fidelity and is_number(m.fidelity.get("cosine")):
        return "cosine", float(m.fidelity["cosine"])  # type: ignore[arg-type]
    return None


def fmt_quality(m: Measurement) -> str:
    q = quality(m)
    if q is None:
        return MISSING
    name, value = q
    return f"acc {value:.2%}" if name == "accuracy" else f"cos {value:.5f}"


def backend_text(m: Measurement) -> str:
    """What actually ran, from `Backend.describe()`: runtime · device [precision] (asked X)."""
    b = m.backend or {}
    runtime = b.get("runtime") or m.runtime
    if b.get("providers_used"):
        used = "/".join(str(p).removesuffix("ExecutionProvider") for p in b["providers_used"])
    elif b.get("execution_devices"):
        used = "/".join(str(d) for d in b["execution_devices"])
    else:
        used = b.get("device") or ""
    parts = [str(runtime)]
    if used:
        parts.append(str(used))
    if b.get("inference_precision"):
        parts.append(str(b["inference_precision"]))
    if b.get("delegate"):
        parts.append(Path(str(b["delegate"])).name)
    text = " · ".join(parts[:2]) + "".join(f" {p}" for p in parts[2:])
    asked = m.device_requested
    asked = asked.removesuffix("ExecutionProvider") if asked else None
    if asked and used and asked.lower() not in str(used).lower():
        text += f" (asked {asked})"
    elif asked and not used:
        text += f" · {asked} (not run)"
    return text


def status(result: Result, strict: bool = False) -> str:
    """pass | fail | error | not measured, for one artifact."""
    if result.measurement.error:
        return "error"
    states = {v.status for v in result.verdicts}
    if "fail" in states or (strict and "not measured" in states):
        return "fail"
    return "not measured" if "not measured" in states else "pass"


def failure_text(v: Verdict) -> str:
    """`latency_p90_ms: measured 3.2 > limit 1.0`."""
    if not is_number(v.measured):
        return f"{v.budget}: {v.reason or 'not measured'} (limit {fmt_value(v.limit)})"
    measured = float(v.measured)  # type: ignore[arg-type]
    sign = ">" if measured > v.limit else "<" if measured < v.limit else "="
    return f"{v.budget}: measured {fmt_value(v.measured)} {sign} limit {fmt_value(v.limit)}"


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean(text: str) -> str:
    """Runtime messages without terminal colour codes and other control characters."""
    return _CONTROL.sub("", _ANSI.sub("", str(text)))


def error_line(text: str, limit: int = 300) -> str:
    """The informative line of an error: the last line of a traceback, else the first line."""
    lines = [line.strip() for line in clean(text).strip().splitlines() if line.strip()] or ["unknown error"]
    line = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass
class Issues:
    """What the reader must see under any table: failures, errors, figures not measured."""

    failed: list[str]
    errors: list[str]
    not_measured: list[str]
    notes: list[str]


def issues(report: Report) -> Issues:
    strict = bool(report.settings.get("strict"))
    out = Issues([], [], [], [])
    for r in report.results:
        m = r.measurement
        if m.error:
            out.errors.append(f"{m.name}: {error_line(m.error)}")
        unjudged: dict[str, list[str]] = {}  # reason -> budgets it left unjudged
        for v in r.verdicts:
            if v.status == "fail" or (strict and v.status == "not measured" and not m.error):
                out.failed.append(f"{m.name}: {failure_text(v)}")
            elif v.status == "not measured" and not m.error:
                unjudged.setdefault(v.reason or "not measured", []).append(v.budget)
        figures: dict[str, list[str]] = {}  # reason -> figures it left unmeasured
        for figure, why in m.skipped.items():
            figures.setdefault(why, []).append(figure)
        for why, names in figures.items():
            budgets = unjudged.pop(why, [])
            tail = f" (budget {', '.join(budgets)} not judged)" if budgets else ""
            out.not_measured.append(f"{m.name}: {', '.join(names)}: {why}{tail}")
        out.not_measured += [f"{m.name}: budget {', '.join(b)} not judged: {why}" for why, b in unjudged.items()]
        out.notes += [f"{m.name}: {note}" for note in m.notes]
    return out


def host_line(host: dict[str, Any]) -> str:
    """One line of host facts: `AMD EPYC (x86_64, 8 cores, 31.3 GB) · Linux 6.8 · Python 3.11.7 · onnxruntime 1.32.0`."""
    parts = []
    for key, value in host.items():
        if key == "cpu" and isinstance(value, dict):
            extra = [value.get("architecture"), value.get("physical_cores") and f"{value['physical_cores']} cores",
                     is_number(value.get("memory_gb")) and f"{fmt_value(value['memory_gb'])} GB"]
            extra = [str(e) for e in extra if e]
            parts.append(f"{value.get('model') or 'CPU'}" + (f" ({', '.join(extra)})" if extra else ""))
        elif key == "python":
            parts.append(f"Python {value}")
        elif key in ("os", "runtimes", "hostname"):
            parts.append(_short(value).replace(";", ","))
        elif _short(value):
            parts.append(f"{key} {_short(value)}")
    return " · ".join(p for p in parts if p)


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k} {_short(v)}" for k, v in value.items() if _short(v))
    if isinstance(value, (list, tuple)):
        return ", ".join(_short(v) for v in value)
    if isinstance(value, float):
        return fmt_value(value, missing="")
    return "" if value is None else str(value)


def _row(result: Result, strict: bool) -> list[str]:
    m = result.measurement
    lat = m.latency
    return [
        m.name,
        m.precision or MISSING,
        backend_text(m),
        fmt_num(lat.p50_ms if lat else None),
        fmt_num(lat.p90_ms if lat else None),
        fmt_num(m.peak_memory_mb),
        fmt_num(m.size_mb),
        fmt_quality(m),
        status(result, strict),
    ]


# ---------------------------------------------------------------- JSON


def write_json(report: Report, path: str | Path) -> Path:
    """`report.to_dict()` as indented JSON (schema edgekit.report/1); NaN and inf become null."""
    path = Path(path)
    text = json.dumps(_jsonable(report.to_dict()), indent=2, ensure_ascii=False, allow_nan=False)
    atomic_write_text(path, text + "\n")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return _jsonable(value.tolist())
    if isinstance(value, Path):
        return str(value)
    return str(value)


# ---------------------------------------------------------------- Markdown


def markdown(report: Report) -> str:
    """A compact GitHub-flavoured table for a pull-request comment, with failures listed under it."""
    strict = bool(report.settings.get("strict"))
    overall = "✅ passed" if report.passed else "❌ failed"
    lines = [f"### edgekit bench: {overall}", ""]
    lines.append("| " + " | ".join(TABLE_COLUMNS) + " |")
    lines.append("|" + "|".join(":--" if i < 3 else "--:" for i in range(len(TABLE_COLUMNS) - 1)) + "|:--|")
    for result in report.results:
        cells = _row(result, strict)
        cells[-1] = STATUS_ICON[cells[-1]]
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    if not report.results:
        lines.append("| " + " | ".join(["no artifacts"] + [""] * (len(TABLE_COLUMNS) - 1)) + " |")
    found = issues(report)
    for title, items in (
        ("Failed budgets", found.failed),
        ("Errors", found.errors),
        ("Not measured", found.not_measured),
        ("Notes", found.notes),
    ):
        if items:
            lines += ["", f"**{title}**", *(f"- {_md(item)}" for item in items)]
    lines += ["", f"<sub>Host: {_md(host_line(report.host)) or 'unknown'} · edgekit {_md(report.edgekit_version)} · {_md(report.created)}</sub>"]
    return "\n".join(lines) + "\n"


def write_markdown(report: Report, path: str | Path) -> Path:
    path = Path(path)
    atomic_write_text(path, markdown(report))
    return path


def _md(text: str) -> str:
    """One table cell or list item: one line, no HTML tag, pipes escaped (`>` alone is harmless)."""
    text = " ".join(str(text).split())
    return text.replace("<", "&lt;").replace("|", "\\|")


# ---------------------------------------------------------------- JUnit XML


def write_junit(report: Report, path: str | Path) -> Path:
    """One <testsuite name="edgekit.bench"> (in a <testsuites> root), one <testcase> per (artifact, budget).

    A failed budget is a <failure>, a budget that could not be judged is <skipped>
    (a <failure> under --strict), and an artifact that could not be benchmarked at all
    is one testcase named "benchmark" with an <error>. An artifact without budgets gets
    a passing "benchmark" testcase, so that every artifact shows up in CI.
    """
    strict = bool(report.settings.get("strict"))
    suite = ET.Element("testsuite", name="edgekit.bench", timestamp=_xml(report.created))
    if report.host.get("hostname"):
        suite.set("hostname", _xml(str(report.host["hostname"])))
    props = ET.SubElement(suite, "properties")
    for key, value in [("edgekit_version", report.edgekit_version), *report.settings.items()]:
        ET.SubElement(props, "property", name=_xml(str(key)), value=_xml(_short(value)))
    counts = dict(tests=0, failures=0, errors=0, skipped=0)
    total = 0.0
    for result in report.results:
        m = result.measurement
        classname = _xml(f"edgekit.{_class_part(m.target or Path(m.path).name or m.name)}.{_class_part(m.format)}")
        seconds = _seconds(m)
        total += seconds
        if m.error:
            cases = [("benchmark", "error", error_line(m.error), clean(m.error))]
        elif not result.verdicts:
            cases = [("benchmark", "pass", "", "")]
        else:
            cases = []
            for v in result.verdicts:
                if v.status == "fail" or (strict and v.status == "not measured"):
                    cases.append((v.budget, "failure", failure_text(v), v.reason))
                elif v.status == "not measured":
                    cases.append((v.budget, "skipped", f"{v.budget}: not measured: {v.reason or 'no value'}", ""))
                else:
                    cases.append((v.budget, "pass", "", ""))
        for name, kind, message, body in cases:
            case = ET.SubElement(suite, "testcase", classname=classname, name=_xml(name), time=f"{seconds / len(cases):.3f}")
            counts["tests"] += 1
            if kind == "pass":
                continue
            counts[{"failure": "failures", "error": "errors", "skipped": "skipped"}[kind]] += 1
            child = ET.SubElement(case, kind, message=_xml(message))
            if kind != "skipped":
                child.set("type", "budget" if kind == "failure" else "benchmark")
                if body:
                    child.text = _xml(body)
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", f"{total:.3f}")
    root = ET.Element("testsuites", name="edgekit", **{k: suite.get(k) for k in ("tests", "failures", "errors", "skipped", "time")})
    root.append(suite)  # the <testsuites> root is what pytest writes; CI readers accept it everywhere
    ET.indent(root)
    path = Path(path)
    text = ET.tostring(root, encoding="unicode", xml_declaration=False)
    atomic_write_text(path, '<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n")
    return path


_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml(text: str) -> str:
    """Text XML 1.0 can hold (runtime errors may carry ANSI escapes and other control bytes)."""
    return _XML_BAD.sub("�", str(text))


def _class_part(text: str) -> str:
    """A classname segment: dots would be read as packages by CI reports."""
    return re.sub(r"[.\s]+", "_", str(text)) or "_"


def _seconds(m: Measurement) -> float:
    """Roughly how long the artifact's benchmark took: load, first inference, timed runs."""
    ms = sum(float(v) for v in (m.load_ms, m.first_inference_ms) if is_number(v))
    if m.latency and is_number(m.latency.mean_ms):
        ms += m.latency.runs * m.latency.mean_ms
    return ms / 1000.0


# ---------------------------------------------------------------- console


def console_table(report: Report, console=None) -> None:
    """The rich table `edgekit bench` prints (to stderr unless `console` says otherwise)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    strict = bool(report.settings.get("strict"))
    console = console or Console(stderr=True)
    table = Table(title="edgekit bench", title_justify="left")
    for column in ("target", "format", "precision", "backend & device", "p50 ms", "p90 ms", "memory MB", "size MB", "accuracy / fidelity", "verdict"):
        right = column.endswith(" ms") or column.endswith(" MB")
        table.add_column(column, justify="right" if right else "left", overflow="fold")
    for result in report.results:
        m = result.measurement
        cells = _row(result, strict)
        verdict = cells[-1]
        table.add_row(
            Text(m.target or Path(m.path).name or m.name),
            Text(m.format),
            *(Text(c) for c in cells[1:-1]),
            Text(verdict.upper() if verdict != "pass" else verdict, style=STATUS_STYLE[verdict]),
        )
    console.print(table)
    found = issues(report)
    for style, label, items in (
        ("red", "failed", found.failed),
        ("red", "error", found.errors),
        ("yellow", "not measured", found.not_measured),
        ("dim", "note", found.notes),
    ):
        for item in items:
            console.print(Text.assemble((f"{label}: ", style), item))
    overall = Text("passed", style="bold green") if report.passed else Text("FAILED", style="bold red")
    console.print(Text.assemble("edgekit bench ", overall, f" ({len(report.results)} artifacts)"))


# ---------------------------------------------------------------- HTML


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
    """bxp() statistics: from the raw samples when kept, else from the percentiles."""
    import numpy as np

    lat = result.measurement.latency
    samples = np.asarray([s for s in lat.samples_ms if is_number(s)], dtype=np.float64)
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

WRITERS: dict[str, Callable[[Report, str | Path], Path]] = {
    "json": write_json,
    "md": write_markdown,
    "xml": write_junit,
    "html": write_html,
}
"""Report writers by file suffix, for `edgekit bench --report FILE`."""

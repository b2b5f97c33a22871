"""Report writers for `edgekit bench`: JSON, Markdown, JUnit XML, HTML and the console table.

Every writer reads the same `Report` (benchmarks/measurement.py). A figure that was not
measured is None there and prints as "—" here, with its reason listed below the table:
no writer ever prints a number for a missing or NaN figure. rich and matplotlib are
imported inside the functions that use them, so `import edgekit.reports` stays light.
"""
from __future__ import annotations

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
    """The rich table `edgekit bench` prints (to stderr unless `console` says otherwise).

    Off a terminal (a CI log, `2> file`) each row stays on one line: see edgekit.terminal.
    """
    from rich.table import Table
    from rich.text import Text

    from edgekit.terminal import rich_console

    strict = bool(report.settings.get("strict"))
    console = console or rich_console(stderr=True)
    table = Table(title="edgekit bench", title_justify="left")
    for column in ("target", "format", "precision", "backend & device", "p50 ms", "p90 ms", "memory MB", "size MB", "accuracy / fidelity", "verdict"):
        right = column.endswith(" ms") or column.endswith(" MB")
        table.add_column(column, justify="right" if right else "left", overflow="fold")
    for result in report.results:
        m = result.measurement
        cells = _row(result, strict)
        verdict = cells[-1]
        table.add_row(
            Text((m.target or Path(m.path).name or m.name) + (f" @{m.device['name']}" if m.device else "")),
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
    """One self-contained HTML file with the table and plots (see edgekit.report_html)."""
    from edgekit.report_html import write_html as write

    return write(report, path)


WRITERS: dict[str, Callable[[Report, str | Path], Path]] = {
    "json": write_json,
    "md": write_markdown,
    "xml": write_junit,
    "html": write_html,
}
"""Report writers by file suffix, for `edgekit bench --report FILE`."""

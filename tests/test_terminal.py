"""Console output off a terminal: rows on one line, COLUMNS and NO_COLOR honoured."""
from __future__ import annotations

import io

from rich.table import Table

from edgekit.terminal import LOG_WIDTH, rich_console


def _wide_table() -> Table:
    table = Table(title="wide")
    for name in ("artifact", "backend & device", "notes"):
        table.add_column(name, overflow="fold")
    table.add_row("cpu-fp32/openvino", "openvino · CPU f32 (asked AUTO)", "x" * 150)
    return table


def test_a_log_gets_each_row_on_one_line(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    log = io.StringIO()  # not a terminal, like a CI log or `2> file`
    console = rich_console(file=log)
    console.print(_wide_table())
    rows = [line for line in log.getvalue().splitlines() if line.startswith("│")]
    assert console.width == LOG_WIDTH and len(rows) == 1 and "x" * 150 in rows[0]
    assert "\x1b[" not in log.getvalue()


def test_columns_sets_the_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    log = io.StringIO()
    rich_console(file=log).print(_wide_table())
    assert max(len(line) for line in log.getvalue().splitlines()) <= 60


def test_no_color_wins_over_force_color(monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    log = io.StringIO()
    rich_console(file=log).print("[red]failed[/] [green]pass[/]")
    assert "failed pass" in log.getvalue() and "\x1b[31" not in log.getvalue() and "\x1b[32" not in log.getvalue()

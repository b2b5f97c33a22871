"""Rich tables for the console: target profiles and model inspections (one row a line in logs, see terminal.py)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from edgekit.targets.listing import device_label
from edgekit.terminal import rich_console

if TYPE_CHECKING:
    from edgekit.targets.schema import Target


def target_table(rows: list[dict[str, Any]], console: Console | None = None) -> None:
    """The listing's rows (edgekit.targets.listing): name, class, extends, formats."""
    table = Table(title="edgekit targets", title_justify="left")
    for column in ("name", "class", "extends", "formats: precision, I/O dtype, runtime:device"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["name"], row["class"], row["extends"], "\n".join(row["formats"]), end_section=True)
    console = console or rich_console()
    console.print(table)
    console.print("`edgekit targets NAME` shows a profile in full.")


def show_target(profile: Target, console: Console | None = None) -> None:
    console = console or rich_console()
    console.print(f"[bold]{profile.name}[/] ({profile.device_class.value}) from {profile.source}")
    if profile.extends:
        console.print(f"extends: {' -> '.join(profile.extends)}")
    console.print(profile.description)
    if profile.hardware:
        for key, value in profile.hardware.model_dump(exclude_none=True).items():
            console.print(f"  {key}: {value}")
    table = Table(title="recipes", title_justify="left")
    for column in ("format", "precision", "per-channel", "calibration", "act/weight", "I/O", "runtime:device", "threads", "tolerance"):
        table.add_column(column, overflow="fold")
    for fmt, r in profile.recipes().items():
        tol = profile.tolerance_for(fmt).model_dump(exclude_none=True)
        table.add_row(
            fmt.value,
            r.precision.value,
            str(r.per_channel),
            r.calibration.value,
            f"{r.activation_type.value}/{r.weight_type.value}",
            f"{r.input_dtype.value} -> {r.output_dtype.value}",
            f"{r.runtime.value}:{device_label(r)}",
            str(r.threads or "default"),
            ", ".join(f"{k}={v}" for k, v in tol.items()),
        )
    console.print(table)
    if profile.budgets:
        console.print("budgets: " + ", ".join(f"{k}={v}" for k, v in profile.budgets.items()))


def show_inspection(info: dict[str, Any], console: Console | None = None) -> None:
    console = console or rich_console()
    console.print(f"[bold]{info['path']}[/] ({info['format']}, {info['bytes'] / 1e6:.3f} MB, {info['parameters']:,} parameters)")
    table = Table(title_justify="left")
    for column in ("", "name", "shape", "dtype", "quantization"):
        table.add_column(column)
    for kind in ("inputs", "outputs"):
        for spec in info[kind]:
            quant = spec.get("quantization")
            q = f"scale={quant['scale']:.6g} zero_point={quant['zero_point']}" if quant else ""
            table.add_row(kind[:-1], spec["name"], str(spec["shape"]), spec["dtype"], q)
    console.print(table)
    ops = Table(title="ops", title_justify="left")
    ops.add_column("op")
    ops.add_column("count", justify="right")
    for op, count in sorted(info["ops"].items(), key=lambda kv: (-kv[1], kv[0])):
        ops.add_row(op, str(count))
    console.print(ops)


def show_doctor(facts: dict[str, Any], console: Console | None = None) -> None:
    console = console or rich_console()
    host, cpu = facts["host"], facts["host"]["cpu"]
    console.print(f"[bold]CPU[/] {cpu['model']} ({cpu['architecture']}, {cpu['physical_cores']} cores, "
                  f"{cpu['logical_cores']} threads), {cpu['memory_gb']} GB memory")
    console.print(f"[bold]ISA[/] {', '.join(cpu['features']) or 'none of the tracked features'}")
    console.print(f"[bold]OS[/] {host['os']}, Python {host['python']}")
    table = Table(title="runtimes", title_justify="left")
    for column in ("runtime", "package", "devices"):
        table.add_column(column, overflow="fold")
    for name, runtime in facts["runtimes"].items():
        if runtime.get("installed"):
            table.add_row(name, runtime["package"], ", ".join(runtime["devices"]))
        else:
            table.add_row(name, "[red]not installed[/]", runtime["install"])
    console.print(table)
    targets = Table(title="built-in targets on this host", title_justify="left")
    for column in ("target", "format", "runtime:device", "on this host"):
        targets.add_column(column, overflow="fold")
    colours = {"measure": "green", "verify only": "yellow", "unavailable": "red"}
    for row in facts["targets"]:
        device = row["device"].removesuffix("ExecutionProvider")
        detail = "" if row["status"] == "measure" else f" ({device} absent)" if row["status"] == "verify only" else ""
        targets.add_row(row["target"], row["format"], f"{row['runtime']}:{device}",
                        f"[{colours[row['status']]}]{row['status']}[/]{detail}")
    console.print(targets)


def show_compatibility(results: dict[str, Any], console: Console | None = None) -> None:
    """One row per artifact: share of ops on the accelerator, then what falls back and why."""
    console = console or rich_console()
    table = Table(title="op placement", title_justify="left")
    for column in ("artifact", "accelerator", "on accelerator", "CPU fallback (op x count: reason)"):
        table.add_column(column, overflow="fold")
    for name, result in results.items():
        share = "not checked" if result.fraction is None else f"{result.accelerated_ops}/{result.total_ops} ({result.fraction:.0%})"
        fallbacks = "\n".join(f"{op} x{count}: {reason}" for op, reason, count in result.grouped()) or "-"
        table.add_row(name, f"{result.accelerator}\n[dim]{result.method}[/]", share, fallbacks, end_section=True)
    console.print(table)
    for name, result in results.items():
        for note in result.notes:
            console.print(f"[dim]{name}: {note}[/]")

"""The `edgekit` command: a thin layer over the Python API.

Only typer is imported at start; rich, pydantic and the runtimes load inside the commands
that need them, so `edgekit --help`, `edgekit targets` and shell completion stay fast
(tests/test_cli_fast.py checks the imported modules, tests/perf/test_cold_start.py the time).
Commands defined in other modules are registered here; those modules import nothing heavy
at their top level either.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup
from edgekit.errors import EXIT_FAILED, EXIT_INTERNAL, EdgekitError, InputError


class _Group(TyperGroup):
    """The root group, with a --help flag that parses without typer's pydantic coercion.

    typer coerces every parameter value through pydantic, and an absent flag's None is not
    a bool it can skip: the root's --help alone pulled pydantic (~0.1 s) into every
    subcommand's `--help` and into shell completion.
    """

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None and option.default is None:
            option.default = False
        return option


app = typer.Typer(
    name="edgekit",
    cls=_Group,
    help="Convert, quantize, verify and benchmark models for edge targets (TFLite, ONNX, OpenVINO).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # No --install-completion/--show-completion: as root options they are parsed (through
    # pydantic) on every call, `doctor --help` included. main() enables completion instead.
    add_completion=False,
    # Plain help: typer's rich help imports rich, markdown-it and pygments (~0.1 s, half of
    # the start); plain text also reads better in CI logs.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _fail(message: str, code: int) -> typer.Exit:
    print(f"edgekit: error: {message}", file=sys.stderr)
    return typer.Exit(code)


def handles_errors(command):
    """User errors become one line and their exit code; bugs keep their traceback (exit 3)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except EdgekitError as exc:
            raise _fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise _fail("interrupted; previous outputs were left as they were", 130) from None
        except BrokenPipeError:  # `edgekit targets --json | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            raise typer.Exit(141) from None  # 128 + SIGPIPE, as a shell tool ends
        except Exception:
            traceback.print_exc()
            raise _fail("internal error (a bug in edgekit; the traceback above says where)", EXIT_INTERNAL) from None

    return wrapper


def _why_failed(artifact) -> str:
    if artifact.accuracy_aware and not artifact.accuracy_aware.get("met"):
        return " (accuracy-aware search missed its goal)"
    if artifact.repair and not artifact.repair.get("met"):
        return f" (not repaired: {artifact.repair.get('fault') or 'no candidate met the tolerance'})"
    return ""


@app.command()
@handles_errors
def convert(
    model: Annotated[Path, typer.Argument(help="A .keras/.h5 file, a SavedModel directory, an .onnx or a .tflite file.")],
    target: Annotated[list[str], typer.Option("-t", "--target", help="Built-in target name or PROFILE.toml; repeatable.")] = ["cpu"],
    format: Annotated[Optional[list[str]], typer.Option("-f", "--format", help="tflite,onnx,openvino (default: every format the target defines).")] = None,
    calibration: Annotated[Optional[Path], typer.Option("-c", "--calibration", help=".npz/.npy file or a folder of images.")] = None,
    calibration_samples: Annotated[int, typer.Option("--calibration-samples", help="Samples used for calibration.")] = 200,
    precision: Annotated[Optional[str], typer.Option("--precision", help="Override every recipe's precision: fp32, fp16, int8-dynamic, int8-static, int8-full, int16x8.")] = None,
    preprocess: Annotated[Optional[list[str]], typer.Option("--preprocess", help="Image preprocessing KEY=VALUE (size=224,224 layout=NHWC color=RGB scale=0.00392 mean=0.5,0.5,0.5 std=...); repeatable.")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Output directory.")] = Path("edgekit-out"),
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip convert-time verification against the source model.")] = False,
    accuracy_aware: Annotated[bool, typer.Option("--accuracy-aware", help="Search for the fastest int8 recipe that meets the accuracy goal (needs --evaluation).")] = False,
    evaluation: Annotated[Optional[Path], typer.Option("--evaluation", help="Labelled data (.npz with inputs and 'labels'): the accuracy budget is checked on it, and --accuracy-aware and the repair judge on it.")] = None,
    max_accuracy_drop: Annotated[Optional[float], typer.Option("--max-accuracy-drop", help="Goal of --accuracy-aware: accuracy drop vs the source (0-1; default: the profile's).")] = None,
    min_cosine: Annotated[Optional[float], typer.Option("--min-cosine", help="Goal of --accuracy-aware without labels: output cosine similarity to the source.")] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="Seconds one artifact's converter may run before it counts as hung (default 900, or EDGEKIT_CONVERT_TIMEOUT).")] = None,
    no_repair: Annotated[bool, typer.Option("--no-repair", help="Leave an int8 artifact that misses its tolerance failed instead of searching for a repair.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress lines.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Stream the tools' own output to the terminal too (it always goes to DIR/logs/).")] = False,
) -> None:
    """Convert MODEL for each target into each format, quantize it, and verify every artifact."""
    from edgekit.console import Progress
    from edgekit.conversion import convert as run_convert

    manifest = run_convert(
        model,
        target,
        formats=format,
        calibration=calibration,
        calibration_samples=calibration_samples,
        precision=precision,
        output=output,
        verify_artifacts=not no_verify,
        preprocess=_parse_preprocess(preprocess),
        evaluation=evaluation,
        accuracy_aware=accuracy_aware,
        max_accuracy_drop=max_accuracy_drop,
        min_cosine=min_cosine,
        repair=not no_repair,
        progress=Progress(quiet=quiet or as_json, verbose=verbose),
        timeout=timeout,
    )
    if as_json:
        print(json.dumps(manifest.to_dict(), indent=2))
    elif not quiet:
        print(f"wrote {manifest.path} ({len(manifest.artifacts)} artifacts)", file=sys.stderr)
    if not manifest.passed:
        failed = [f"{a.target}/{a.format}" + _why_failed(a) for a in manifest.artifacts if not a.passed]
        failed += [f"{e['target']}/{e['format']}" for e in manifest.errors]
        logs = f"; the tools' output is in {manifest.path.parent / 'logs'}" if manifest.errors and manifest.path else ""
        raise _fail(f"{len(failed)} artifact(s) failed: {', '.join(failed)}{logs}", EXIT_FAILED)


@app.command()
@handles_errors
def bench(
    paths: Annotated[list[Path], typer.Argument(help="A manifest.json, an output directory of `edgekit convert`, or .tflite/.onnx/.xml files.")],
    data: Annotated[Optional[Path], typer.Option("--data", help=".npz with input arrays (named after the inputs) and optional 'labels'.")] = None,
    reference: Annotated[Optional[Path], typer.Option("--reference", help="The source model, for fidelity and accuracy drop (default: the manifest's source).")] = None,
    target: Annotated[Optional[str], typer.Option("-t", "--target", help="Target profile for runtime, device and default budgets (default: each artifact's own).")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", help="tflite | onnxruntime | openvino (default: the format's runtime).")] = None,
    accelerator: Annotated[Optional[str], typer.Option("--accelerator", help="The runtime's device: CPU, GPU, NPU, AUTO (OpenVINO), a LiteRT delegate, or an ONNX Runtime provider (CUDA, ...).")] = None,
    device: Annotated[Optional[list[str]], typer.Option("--device", help="Run on this inventory device ([devices.NAME]; see `edgekit devices`) instead of this host; repeatable.")] = None,
    all_artifacts: Annotated[bool, typer.Option("--all", help="With --device: run every artifact there, not only those built for the device's target.")] = False,
    inventory: Annotated[Optional[list[Path]], typer.Option("-i", "--inventory", help="devices.toml or edgekit.toml with [devices.NAME] (default: ./devices.toml and ./edgekit.toml); repeatable.")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="Inference threads (default: the profile's, else the runtime's).")] = None,
    batch: Annotated[int, typer.Option("--batch", help="Batch size per inference.")] = 1,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed inferences before measuring.")] = 10,
    min_runs: Annotated[int, typer.Option("--min-runs", help="Timed inferences, at least.")] = 50,
    min_time: Annotated[float, typer.Option("--min-time", help="Seconds of timed inferences, at least.")] = 1.0,
    budget: Annotated[Optional[list[str]], typer.Option("--budget", help="KEY=VALUE, e.g. latency_p90_ms=5 or min_accuracy=0.95; repeatable; overrides the profile's.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="A budget that could not be measured fails.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds before one artifact's worker is stopped.")] = 600.0,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write the JSON report (schema edgekit.report/1).")] = None,
    markdown: Annotated[Optional[Path], typer.Option("--markdown", help="Write a Markdown table for pull requests.")] = None,
    junit: Annotated[Optional[Path], typer.Option("--junit", help="Write JUnit XML: one testcase per (artifact, budget).")] = None,
    html: Annotated[Optional[Path], typer.Option("--html", help="Write a self-contained HTML report with plots.")] = None,
    raw_samples: Annotated[bool, typer.Option("--raw-samples", help="Keep every latency sample in the JSON report (default: quantiles, a histogram and the first 200).")] = False,
    logs: Annotated[Optional[Path], typer.Option("--logs", help="Directory for the runtimes' own output, one log per artifact (default: logs/ beside --report, else beside the manifest, else ./logs).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress lines or table.")] = False,
    cluster: Annotated[Optional[str], typer.Option("--cluster", help="A Ray head HOST:PORT: run on the device slots `edgekit devices attach` advertised there (needs edgekit[cluster]).")] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Stream the runtimes' own output to the terminal too.")] = False,
) -> None:
    """Benchmark artifacts on their runtimes and judge latency, memory, size and accuracy budgets."""
    from edgekit import reports
    from edgekit.benchmarks.runner import Settings, benchmark
    from edgekit.console import Progress

    devices = []
    if cluster is not None:
        from edgekit.cluster import connect

        cluster = connect(cluster)  # an address that does not answer: exit 2 before anything runs
    if device and cluster is None:
        from edgekit.targets.devices import bench_devices

        devices, meant_accelerator = bench_devices(device, inventory)
        if meant_accelerator:
            if accelerator is not None or len(meant_accelerator) > 1:
                raise InputError(f"--device {', '.join(meant_accelerator)}: not an inventory device; for the runtime's "
                                 "device give one --accelerator")
            accelerator = meant_accelerator[0]
            if not (quiet or as_json):
                print(f"edgekit: note: --device {accelerator} is the runtime's device here (no inventory device of "
                      f"that name); it is spelled --accelerator now", file=sys.stderr)
    if all_artifacts and not devices and not (cluster is not None and device):
        raise InputError("--all needs --device NAME (it picks which artifacts run on a device)")
    settings = Settings(warmup=warmup, min_runs=min_runs, min_time=min_time, threads=threads, batch=batch,
                        backend=backend, device=accelerator, strict=strict, timeout=timeout, raw_samples=raw_samples)
    result = benchmark(paths, data=data, reference=reference, target=target, budgets=budget, settings=settings,
                       progress=Progress(quiet=quiet or as_json, verbose=verbose), devices=devices, all_artifacts=all_artifacts,
                       logs=logs if logs is not None else (report.parent / "logs" if report is not None else None),
                       cluster=cluster, cluster_devices=device if cluster is not None else None)
    for path, write in ((report, reports.write_json), (markdown, reports.write_markdown),
                        (junit, reports.write_junit), (html, reports.write_html)):
        if path is not None:
            write(result, path)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    elif not quiet:
        reports.console_table(result)
    if not result.passed:
        failed = [r.measurement.name for r in result.results if not r.passed(strict)]
        raise _fail(f"{len(failed)} artifact(s) missed a budget or errored: {', '.join(failed)}", EXIT_FAILED)


@app.command()
@handles_errors
def build(
    config: Annotated[Optional[Path], typer.Option("-c", "--config", help="edgekit.toml, or pyproject.toml with a [tool.edgekit] table (default: ./edgekit.toml, else ./pyproject.toml).")] = None,
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Build only this target (repeatable); the others keep what the last build made.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Convert every target, even those that are up to date.")] = False,
    no_bench: Annotated[bool, typer.Option("--no-bench", help="Convert and verify only: no benchmarks, budgets or reports.")] = False,
    rebench: Annotated[bool, typer.Option("--rebench", help="Measure again instead of reusing cached measurements.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was built and decided as JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress lines or table; failures still go to stderr.")] = False,
    publish: Annotated[Optional[Path], typer.Option("--publish", help="After a passing build, add its verified artifacts to model store STORE as the next version (see `edgekit serve`).")] = None,
    cluster: Annotated[Optional[str], typer.Option("--cluster", help="A Ray head HOST:PORT (default: the config's [cluster] address): convert on its CPU nodes, benchmark on its device slots (needs edgekit[cluster]).")] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Stream the tools' own output to the terminal too (it always goes to OUTPUT/logs/).")] = False,
) -> None:
    """Convert, benchmark and gate the model as edgekit.toml says, redoing only what changed."""
    from edgekit.building import build as run_build
    from edgekit.console import Progress

    result = run_build(config, only=only, force=force, bench=not no_bench, rebench=rebench,
                       progress=Progress(quiet=quiet or as_json, verbose=verbose), cluster=cluster)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    elif not quiet:
        if result.report is not None:
            from edgekit import reports

            reports.console_table(result.report)
        built = ", ".join(result.built) or "nothing"
        print(f"built {built}; manifest {result.manifest.path} ({result.seconds:.1f}s)", file=sys.stderr)
    if not result.passed:
        failures = result.failures()
        unpublished = f"; not published to {publish}" if publish is not None else ""
        raise _fail(f"build failed: {len(failures)} problem(s): {'; '.join(failures)}{unpublished}", EXIT_FAILED)
    if publish is not None:
        from edgekit.serving.command import publish_build

        publish_build(result.manifest, publish)


@app.command()
@handles_errors
def init(
    model: Annotated[Optional[Path], typer.Argument(help="The model (default: the one .keras/.h5/.onnx/.tflite or SavedModel beside the config).")] = None,
    config: Annotated[Path, typer.Option("-c", "--config", help="Where to write the config.")] = Path("edgekit.toml"),
    calibration: Annotated[Optional[Path], typer.Option("--calibration", help="Calibration data (default: calib.npz or data/calib.npz beside the model, if there).")] = None,
    evaluation: Annotated[Optional[Path], typer.Option("--evaluation", help="Evaluation data with labels (default: eval.npz or data/eval.npz beside the model, if there).")] = None,
    target: Annotated[Optional[list[str]], typer.Option("-t", "--target", help="Built-in target to add (repeatable; default: cpu).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing config.")] = False,
) -> None:
    """Write a commented edgekit.toml for MODEL, with its inputs and outputs filled in."""
    from edgekit.scaffold import init_config

    path = init_config(model, config, calibration=calibration, evaluation=evaluation, targets=target, force=force)
    print(f"wrote {path}; next: edgekit build -c {path}", file=sys.stderr)


@app.command()
@handles_errors
def targets(
    name: Annotated[Optional[str], typer.Argument(help="Show one profile in full (built-in name or .toml path).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """List the built-in target profiles, or show one in full."""
    if name is not None:
        from edgekit.targets.loader import load_target

        profile = load_target(name)
        if as_json:
            print(json.dumps(profile.to_dict(), indent=2))
        else:
            from edgekit.display import show_target

            show_target(profile)
        return
    from edgekit.targets.listing import builtin_listing

    listing = builtin_listing()  # validated once per content of the profiles, then read from the cache
    if as_json:
        print(json.dumps([entry["profile"] for entry in listing], indent=2))
        return
    from edgekit.rendercache import print_cached

    rows = [entry["row"] for entry in listing]

    def render() -> str:
        from edgekit.display import target_table
        from edgekit.terminal import rich_console

        console = rich_console()
        with console.capture() as captured:
            target_table(rows, console)
        return captured.get()

    # The same rows on the same terminal are the same text: rendered once, then read back without rich.
    print_cached("targets-table", json.dumps(rows), ["edgekit.display", "edgekit.terminal"], render)


@app.command()
@handles_errors
def inspect(
    model: Annotated[Path, typer.Argument(help="A model or artifact: .keras/.h5, SavedModel dir, .onnx, .tflite, OpenVINO .xml.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Inputs and outputs (names, shapes, dtypes), op counts, parameters and size of a model."""
    from edgekit.converters.inspect import inspect_model

    info = inspect_model(model)
    if as_json:
        print(json.dumps(info, indent=2))
        return
    from edgekit.display import show_inspection

    show_inspection(info)


@app.command()
@handles_errors
def check(
    path: Annotated[Path, typer.Argument(help="An artifact (.tflite, .onnx, .xml), a manifest.json or an output directory.")],
    target: Annotated[Optional[str], typer.Option("-t", "--target", help="Target profile to check against (default: each artifact's own; required for a bare file).")] = None,
    min_accelerated_ops: Annotated[Optional[float], typer.Option("--min-accelerated-ops", help="Fail (exit 1) when a smaller share of ops (0-1) runs on the accelerator.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Pre-flight: which ops each artifact's target accelerator runs, and which fall back to the CPU and why."""
    from edgekit.benchmarks.budgets import make_budget
    from edgekit.converters.compat import check_path

    if min_accelerated_ops is not None:
        make_budget("min_accelerated_ops", min_accelerated_ops, "--min-accelerated-ops")
    results = check_path(path, target)
    if as_json:
        print(json.dumps({name: c.to_dict() for name, c in results.items()}, indent=2))
    else:
        from edgekit.display import show_compatibility

        show_compatibility(results)
    if min_accelerated_ops is not None:
        short = [n for n, c in results.items() if c.fraction is None or c.fraction < min_accelerated_ops]
        if short:
            raise _fail(f"below min_accelerated_ops={min_accelerated_ops:g} (or not checked): {', '.join(short)}", EXIT_FAILED)


@app.command()
@handles_errors
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """What this host is and can run: CPU features, runtimes and their devices, and which targets can be measured here."""
    from edgekit.targets.doctor import diagnose

    facts = diagnose()
    if as_json:
        print(json.dumps(facts, indent=2))
        return
    from edgekit.display import show_doctor

    show_doctor(facts)


class _DevicesGroup(TyperGroup):
    """`edgekit devices [NAMES]` checks devices; `edgekit devices attach ...` is the one subcommand."""

    def parse_args(self, ctx, args):
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["check", *args]
        return super().parse_args(ctx, args)

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None and option.default is None:
            option.default = False
        return option


devices_app = typer.Typer(cls=_DevicesGroup, rich_markup_mode=None, add_completion=False,
                          help="Check the inventory's devices (`edgekit devices [NAMES]`), or attach them to a Ray cluster.",
                          context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(devices_app, name="devices")


@devices_app.command("check")
@handles_errors
def devices(
    names: Annotated[Optional[list[str]], typer.Argument(help="Check only these devices (default: all in the inventory).")] = None,
    inventory: Annotated[Optional[list[Path]], typer.Option("-i", "--inventory", help="devices.toml or edgekit.toml with [devices.NAME] tables (default: ./devices.toml and ./edgekit.toml); repeatable.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Reach each device of the inventory: reachable, authenticated, free disk, runtimes, CPU, governor, temperatures."""
    from edgekit.benchmarks.remote.check import check_device, format_row
    from edgekit.targets.devices import load_inventory, select

    chosen = select(load_inventory(inventory), names)
    statuses = []
    for device in chosen:
        status = check_device(device)
        statuses.append(status)
        if not as_json:
            print(format_row(status), flush=True)
    if as_json:
        print(json.dumps([s.to_dict() for s in statuses], indent=2))
    failed = [s.name for s in statuses if not s.ok]
    if failed:
        raise _fail(f"{len(failed)} device(s) failed the check: {', '.join(failed)}", EXIT_FAILED)




@devices_app.command("attach")
@handles_errors
def devices_attach(
    cluster: Annotated[str, typer.Option("--cluster", help="The Ray head to join, HOST:PORT.")],
    names: Annotated[Optional[list[str]], typer.Argument(help="Attach only these devices (default: all in the inventory).")] = None,
    inventory: Annotated[Optional[list[Path]], typer.Option("-i", "--inventory", "--config", help="devices.toml or edgekit.toml with [devices.NAME] tables (default: ./devices.toml and ./edgekit.toml); repeatable.")] = None,
    cpus: Annotated[int, typer.Option("--num-cpus", help="CPUs this host lends the cluster for conversion jobs (0: devices only).")] = 1,
) -> None:
    """Join the cluster as a node and advertise each device that passes its check as an exclusive slot; stays in the foreground."""
    from edgekit.cluster.attach import attach

    code = attach(cluster, inventory, names, cpus)
    if code:
        raise typer.Exit(code)


from edgekit.serving.command import serve as _serve  # noqa: E402  (typer only; the server loads inside)

app.command("serve")(handles_errors(_serve))


def _parse_preprocess(items: list[str] | None):
    if not items:
        return None
    from edgekit.targets.schema import Preprocess
    from pydantic import ValidationError

    values: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--preprocess {item!r}: expected KEY=VALUE, e.g. size=224,224")
        values[key.strip()] = value.split(",") if key.strip() in ("size", "mean", "std") else value
    try:
        return Preprocess.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"])
        raise InputError(f"--preprocess {key}: {error['msg']} (accepted keys: {', '.join(Preprocess.model_fields)})") from None


def main() -> None:
    if any(key.startswith("_EDGEKIT_COMPLETE") for key in os.environ):
        # Shell completion (`eval "$(_EDGEKIT_COMPLETE=source_bash edgekit)"`, also zsh, fish):
        # typer registers its shell classes only here, so plain calls do not pay for them.
        from typer.completion import completion_init

        completion_init()
        app()
        return
    only = _invoked(sys.argv[1:])
    if only is None:
        app()
        return
    # Typer turns every registered command's signature into click parameters on each call (~50 ms
    # of type-hint evaluation for 13 commands); a call that names its command needs that one only,
    # as with click's lazily loaded subcommands. get_group keeps the group a typer app with one
    # command would otherwise collapse into that command.
    commands, groups = only
    app.registered_commands[:], app.registered_groups[:] = commands, groups
    typer.main.get_group(app)()


def _invoked(argv: list[str]):
    """The registered command or group that argv[0] names, as ([command], [group]); None when it
    names none (no command, an option, a typo: the full app answers, with its suggestions)."""
    if not argv or argv[0].startswith("-"):
        return None
    for info in app.registered_commands:
        if (info.name or typer.main.get_command_name(info.callback.__name__)) == argv[0]:
            return [info], []
    for info in app.registered_groups:
        if info.name == argv[0]:
            return [], [info]
    return None


if __name__ == "__main__":
    main()

"""One artifact is one unit of failure: each format group converts in its own child process.

TFLiteConverter and tf2onnx abort or segfault in native code on some graphs, and a runtime
may crash loading what a converter wrote. The parent makes the shared exports once (the
SavedModel of a Keras source) and computes the reference outputs; then each format group
(every tflite artifact, every onnx one, every openvino one) runs `edgekit.conversion_worker`
in a fresh process, at most `jobs` at a time. A Python exception, a native crash or a hang
costs the (target, format) that was being produced: the parent records why, names the tool
and the log, and starts a new child for the rest of the group.

Children that run side by side split the CPUs between them (`cpu_shares`): TensorFlow, ONNX
Runtime, OpenVINO and LiteRT each size their thread pools to every core they can see, so two
children on two cores ran four busy pools, and on MobileNetV2 the same 12 artifacts cost 141 CPU
seconds side by side against 115 one after the other (spinning and preempted threads).
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekit.artifact import Artifact
from edgekit.errors import InputError
from edgekit.targets.schema import Format

DEFAULT_JOBS = 2  # the CI machines have 2 cores; each child is one converter at a time
DEFAULT_TIMEOUT = 900.0  # seconds one artifact may take before its converter counts as hung
POLL_SECONDS = 0.1

# Which tool runs in each phase of producing an artifact, for crash and hang messages.
TOOLS = {
    (Format.TFLITE, "converting"): "TFLiteConverter",
    (Format.TFLITE, "verifying"): "LiteRT",
    (Format.ONNX, "converting"): "tf2onnx / onnxruntime.quantization",
    (Format.ONNX, "verifying"): "ONNX Runtime",
    (Format.OPENVINO, "converting"): "OpenVINO convert_model / NNCF",
    (Format.OPENVINO, "verifying"): "OpenVINO Runtime",
    (Format.TFLITE, "repairing"): "TFLiteConverter (repair)",
    (Format.ONNX, "repairing"): "onnxruntime.quantization (repair)",
    (Format.OPENVINO, "repairing"): "NNCF (repair)",
}
# A PyTorch source is converted by the torch converters (converters/torch_*.py), not TensorFlow's.
TORCH_TOOLS = {
    (Format.TFLITE, "converting"): "litert-torch / ai-edge-quantizer",
    (Format.ONNX, "converting"): "torch.onnx / onnxruntime.quantization",
    (Format.OPENVINO, "converting"): "OpenVINO convert_model / NNCF",
    (Format.TFLITE, "repairing"): "litert-torch / ai-edge-quantizer (repair)",
}


def tool_for(fmt: Format, phase: str, source_format: str | None = None) -> str:
    """The tool that runs in `phase` of producing a `fmt` artifact from a `source_format` source."""
    if source_format == "torch" and (fmt, phase) in TORCH_TOOLS:
        return TORCH_TOOLS[(fmt, phase)]
    return TOOLS.get((fmt, phase)) or tool_for(fmt, "converting", source_format)


@dataclass
class Settings:
    jobs: int = DEFAULT_JOBS
    timeout: float = DEFAULT_TIMEOUT


def settings(timeout: float | None = None, jobs: int | None = None) -> Settings:
    """Settings from the arguments, else EDGEKIT_CONVERT_TIMEOUT / EDGEKIT_JOBS, else the defaults."""
    jobs = jobs if jobs is not None else _env_number("EDGEKIT_JOBS", int, DEFAULT_JOBS)
    timeout = timeout if timeout is not None else _env_number("EDGEKIT_CONVERT_TIMEOUT", float, DEFAULT_TIMEOUT)
    if jobs < 1:
        raise InputError(f"EDGEKIT_JOBS / jobs must be at least 1, got {jobs}")
    if timeout <= 0:
        raise InputError(f"the conversion timeout must be > 0 seconds, got {timeout:g}")
    return Settings(jobs=jobs, timeout=timeout)


def _env_number(name: str, kind: type, default):
    text = os.environ.get(name)
    if not text:
        return default
    try:
        return kind(text)
    except ValueError:
        raise InputError(f"{name}={text!r} is not a number") from None


@dataclass
class Work:
    index: int
    plan: Any  # edgekit.conversion._Plan
    staged: Path  # where the artifact is written in the staging directory
    log: Path  # DIR/logs/<target>-<format>.log


@dataclass
class Outcome:
    artifact: Artifact | None = None
    error: str | None = None


@dataclass
class Context:
    """What every child needs besides its plans; pickled into the child's job file."""

    source: Any  # SourceModel without its handle (children read files, not the parent's objects)
    calibration: Any
    evaluation: Any
    samples: Any
    reference: list
    verify: bool
    staging: Path
    shared: dict[str, Any]  # saved_model path or saved_model_error, source_file for searches
    verbose: bool = False
    repair: bool = True  # an int8 artifact that misses its tolerance is searched for again (converters/repair.py)
    unseen_samples: bool = False  # `samples` are further samples of the data, not calibration samples
    labelled: Any = None  # conversion.LabelledCheck: the accuracy budget judged on labelled evaluation data


@dataclass
class _Group:
    format: Format
    items: list[Work]
    job_file: Path
    results: Path
    process: subprocess.Popen | None = None
    copier: Any = None
    slot: int = 0  # which of the `jobs` CPU shares its child runs on
    started: float = 0.0  # time.monotonic() when its child started, or last finished an item
    done: set[int] = field(default_factory=set)


def shared_exports(exports, plans) -> dict[str, Any]:
    """Exports every child reads, made once here: a Keras source's SavedModel (and a file for searches)."""
    source = exports.source
    shared: dict[str, Any] = {}
    if source.format == "keras":
        try:
            shared["saved_model"] = exports.saved_model()
        except Exception as exc:  # each artifact that needs it fails with this reason
            shared["saved_model_error"] = f"Keras could not export the SavedModel: {_first_line(exc)}"
    if source.path is None:  # an in-memory model travels as a file, for children that must run or re-trace it
        shared["source_file"] = _save_source(source, exports.workdir)
    return shared


def _save_source(source, folder: Path) -> Path:
    """An in-memory source written once for the children: a keras.Model as .keras, a torch program as .pt2."""
    if source.format == "torch":
        import torch

        target = folder / "source.pt2"
        torch.export.save(source.handle.program, str(target))
    else:
        target = folder / "source.keras"
        source.handle.save(target)
    return target


def run(work: list[Work], context: Context, config: Settings,
        report: Callable[[Work, Outcome], None]) -> dict[int, Outcome]:
    """Produce every Work item in its format group's child process; outcomes keyed by Work.index."""
    child_context = dataclasses.replace(context, source=dataclasses.replace(context.source, handle=None))
    groups = []
    for fmt in dict.fromkeys(item.plan.format for item in work):
        folder = context.staging / f".worker-{fmt.value}"
        (folder / "results").mkdir(parents=True)
        for item in work:
            if item.plan.format is fmt:
                item.log.parent.mkdir(parents=True, exist_ok=True)
                item.log.write_bytes(b"")  # this run's log replaces the last run's
        items = [item for item in work if item.plan.format is fmt]
        job_file = folder / "job.pickle"
        job_file.write_bytes(pickle.dumps({"context": child_context, "items": items, "results": folder / "results"}))
        groups.append(_Group(fmt, items, job_file, folder / "results"))

    outcomes: dict[int, Outcome] = {}
    waiting, running = list(groups), []
    try:
        _schedule(waiting, running, outcomes, context, config, report)
    finally:  # interrupted (Ctrl-C) or failed: no child outlives the run
        for group in running:
            if group.process is not None and group.process.poll() is None:
                _kill(group.process)
                group.process.wait()
    return outcomes


def cpu_shares(jobs: int) -> list[set[int] | None]:
    """The CPUs each of `jobs` side-by-side children keeps to: this process's CPUs in `jobs` even
    parts; None (no limit) for one job, fewer CPUs than jobs, a platform without affinity, or
    EDGEKIT_WORKER_AFFINITY=0."""
    if jobs < 2 or not hasattr(os, "sched_getaffinity") or os.environ.get("EDGEKIT_WORKER_AFFINITY") == "0":
        return [None] * max(jobs, 1)
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < jobs:
        return [None] * jobs
    return [set(cpus[slot * len(cpus) // jobs:(slot + 1) * len(cpus) // jobs]) for slot in range(jobs)]


def _schedule(waiting, running, outcomes, context: Context, config: Settings, report) -> None:
    exiting: list[_Group] = []
    shares = cpu_shares(min(config.jobs, len(waiting)))
    while waiting or running:
        while waiting and len(running) < config.jobs:
            group = waiting.pop(0)
            # Fewer are running than min(jobs, groups) == len(shares): a share is free.
            group.slot = min(set(range(len(shares))) - {other.slot for other in running})
            _start(group, context.verbose, shares[group.slot])
            running.append(group)
        time.sleep(POLL_SECONDS)
        for group in list(running):
            _collect(group, outcomes, report, context.staging)
            if len(group.done) == len(group.items):
                running.remove(group)  # its slot is free while the child tears TensorFlow down
                exiting.append(group)
                continue
            if group.process.poll() is None and not _hung(group, config.timeout):
                continue
            _finish(group, outcomes, report, context.staging, config.timeout, context.source.format)
            running.remove(group)
            if len(group.done) < len(group.items):
                waiting.insert(0, group)  # a new child for the rest of the group
    for group in exiting:
        group.process.wait()
        if group.copier is not None:
            group.copier.join(timeout=10)
    running.extend(exiting)  # for the caller's clean-up, should waiting be interrupted

def _start(group: _Group, verbose: bool, cpus: set[int] | None = None) -> None:
    from edgekit.toollog import popen_logged, quiet_environment

    first = next(item for item in group.items if item.index not in group.done)
    command = [sys.executable, "-m", "edgekit.conversion_worker", str(group.job_file)]
    env = quiet_environment()
    env.pop("EDGEKIT_WORKER_CPUS", None)
    if cpus is not None:
        env["EDGEKIT_WORKER_CPUS"] = ",".join(map(str, sorted(cpus)))
    group.process, group.copier = popen_logged(command, first.log, tee=verbose, env=env, new_session=True,
                                               terminal_channel=True)
    group.started = time.monotonic()


def _current(group: _Group) -> tuple[Work | None, str, float]:
    """The item the child is working on, its phase, and since when."""
    for item in group.items:
        if item.index in group.done:
            continue
        state = group.results / f"{item.index}.state"
        try:  # the child removes the file when the item is done: between two reads is no error
            since = state.stat().st_mtime
            return item, state.read_text().strip() or "converting", since
        except FileNotFoundError:
            continue
    return None, "starting", 0.0


def _hung(group: _Group, timeout: float) -> bool:
    item, _, since = _current(group)
    started = since if item is not None else 0.0
    elapsed = time.time() - started if started else time.monotonic() - group.started
    return elapsed > timeout


def _collect(group: _Group, outcomes, report, staging: Path) -> None:
    for item in group.items:
        if item.index in group.done:
            continue
        result = group.results / f"{item.index}.pickle"
        if result.exists():
            outcome = pickle.loads(result.read_bytes())
            _record(group, item, _scrubbed(outcome, staging), outcomes, report)


def _record(group: _Group, item: Work, outcome: Outcome, outcomes, report) -> None:
    result = group.results / f"{item.index}.pickle"
    if not result.exists():  # the next child of this group skips it
        result.write_bytes(pickle.dumps(outcome))
    group.done.add(item.index)
    group.started = max(group.started, time.monotonic())  # between items the hang timer restarts here
    outcomes[item.index] = outcome
    report(item, outcome)


def _finish(group: _Group, outcomes, report, staging: Path, timeout: float, source_format: str | None = None) -> None:
    """The child exited or hung: collect what it finished; the item it was on gets the reason."""
    process = group.process
    hung = process.poll() is None
    if hung:
        _kill(process)
    code = process.wait()
    if group.copier is not None:
        group.copier.join(timeout=10)
    _collect(group, outcomes, report, staging)
    item, phase, _ = _current(group)
    if item is None:
        remaining = [i for i in group.items if i.index not in group.done]
        if not remaining:
            return
        item, phase = remaining[0], "starting"  # died before its first item: don't loop on it
    tool = tool_for(group.format, phase, source_format)
    target = f"{item.plan.target.name}/{item.plan.format.value}"
    if hung:
        error = (f"{tool} hung: no result after {timeout:g} s while {phase} {target} (stopped; "
                 "raise the limit with --timeout or EDGEKIT_CONVERT_TIMEOUT)")
    else:
        error = f"{tool} {_death(code)} while {phase} {target}{_last_words(item.log)}"
    checkpoint = group.results / f"{item.index}.checkpoint"
    if phase == "repairing" and checkpoint.exists():
        # The artifact was made and verified before the repair began: keep it, unrepaired.
        outcome = pickle.loads(checkpoint.read_bytes())
        outcome.artifact.notes.append(f"automatic repair did not finish, so this is the unrepaired artifact: {error}")
        outcome.artifact.repair = {"met": False, "line": f"NOT repaired: {error}", "fault": error, "trials": []}
        _record(group, item, _scrubbed(outcome, staging), outcomes, report)
        return
    _record(group, item, _scrubbed(Outcome(error=error), staging), outcomes, report)


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the child's own children (tools' helpers) too
    except (ProcessLookupError, PermissionError):
        process.kill()


def _death(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return "was killed (SIGKILL: out of memory?)" if name == "SIGKILL" else f"crashed ({name})"
    return f"exited with status {code} without a result"


_OP_PATTERNS = (
    re.compile(r"'((?:tf|tfl|mhlo|stablehlo)\.[A-Za-z0-9_]+)' op"),
    re.compile(r"No Op registered for (\w+)"),
    re.compile(r"\bop(?:[_ ]type)?[:=] ?'?([A-Z][A-Za-z0-9_]+)"),
)


def op_of(text: str) -> str | None:
    """The op a tool's message names, where it names one."""
    for pattern in _OP_PATTERNS:
        match = pattern.search(text)
        if match:
            return match.group(1)
    return None


def _last_words(log: Path) -> str:
    from edgekit.toollog import tail

    lines = tail(log, 200)
    for marker in ("Fatal Python error", "Current thread", "Thread 0x"):  # faulthandler's dump follows the tool's words
        lines = next((lines[:i] for i, line in enumerate(lines) if line.startswith(marker)), lines)
    if not lines:
        return ""
    op = next((o for o in map(op_of, reversed(lines)) if o), None)
    last = lines[-1][:200]
    return (f" (op {op})" if op else "") + f"; last output: {last}"


_STAGING = re.compile(r"""[^\s'"(]*\.edgekit-staging-[^/\s'"]+/""")


def scrub(text: str) -> str:
    """A message without staging paths: `DIR/.edgekit-staging-x/cpu/m.tflite` reads `cpu/m.tflite`."""
    return _STAGING.sub("", text)


def _scrubbed(outcome: Outcome, staging: Path) -> Outcome:
    if outcome.error is not None:
        outcome.error = scrub(outcome.error)
    if outcome.artifact is not None:
        outcome.artifact.notes = [scrub(n) for n in outcome.artifact.notes]
        if outcome.artifact.verification is not None:
            outcome.artifact.verification.failures = [scrub(f) for f in outcome.artifact.verification.failures]
    return outcome


def describe_exception(fmt: Format, phase: str, target: str, exc: BaseException,
                       source_format: str | None = None) -> str:
    """One line for an exception that ended one artifact, naming the tool (and the op, where known)."""
    from edgekit.errors import EdgekitError

    tool = tool_for(fmt, phase, source_format)
    text = _first_line(exc)
    if isinstance(exc, EdgekitError):
        named = any(word.lower() in text.lower() for word in re.split(r"[ /]+", tool) if len(word) > 3)
        line = text if named else f"{tool} while {phase} {target}: {text}"
    else:
        line = f"{tool} raised {type(exc).__name__} while {phase} {target}: {text}"
    op = op_of(str(exc))
    return line + (f" (op {op})" if op and op not in line else "")


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0][:400] if lines else type(exc).__name__

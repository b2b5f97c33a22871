"""A format group's child process: `python -m edgekit.conversion_worker JOB.pickle`.

Started by edgekit.isolation. For each item it has no result for yet, it writes
`<index>.state` (the phase: converting, verifying, ...), produces the artifact through
`edgekit.conversion.produce` with every fd-level byte the tools print going to the
item's log, and writes `<index>.pickle` (an Outcome). If this process dies, the parent
reads the state file to know which item, and which tool, it died in.
"""
from __future__ import annotations

import os
import pickle
import sys
import traceback
from pathlib import Path


def main(argv: list[str]) -> int:
    import faulthandler

    from edgekit.toollog import adopt_terminal_channel, capture

    _take_cpu_share()
    adopt_terminal_channel()  # -v: what the item's log gets is shown once, and logged once

    faulthandler.enable()  # a native crash leaves the Python stack in the item's log (fd 2)
    job = pickle.loads(Path(argv[1]).read_bytes())
    context, results = job["context"], Path(job["results"])
    source = _source(context)
    exports = _exports(source, context, job["items"][0].plan.format)
    for item in job["items"]:
        if (results / f"{item.index}.pickle").exists():
            continue  # done by an earlier child of this group
        state = results / f"{item.index}.state"

        def phase(name: str, state: Path = state) -> None:
            state.write_text(name)
            os.utime(state)  # the parent's hang timer runs from here

        phase("converting")
        with capture(item.log, tee=context.verbose):
            outcome = _produce(item, source, context, exports, phase,
                               lambda artifact, index=item.index: _checkpoint(results, index, artifact))
        _write(results / f"{item.index}.pickle", outcome)
        state.unlink(missing_ok=True)
    return 0


def _produce(item, source, context, exports, phase, checkpoint):
    from edgekit import isolation
    from edgekit.console import Progress
    from edgekit.conversion import produce

    plan = item.plan
    current = ["converting"]

    def tracked(name: str) -> None:
        current[0] = name
        phase(name)

    try:
        artifact = produce(source, plan, item.staged, context.calibration, context.evaluation, exports,
                           context.samples, context.reference, context.verify, Progress(stream=sys.stderr), tracked,
                           context.repair, checkpoint, context.unseen_samples, context.labelled)
        return isolation.Outcome(artifact=artifact)
    except Exception as exc:  # any exception costs this artifact only; the traceback stays in its log
        traceback.print_exc()
        target = f"{plan.target.name}/{plan.format.value}"
        return isolation.Outcome(error=isolation.describe_exception(plan.format, current[0], target, exc,
                                                                        source.format))


def _take_cpu_share() -> None:
    """Keep to the CPUs the parent gave this child (edgekit.isolation.cpu_shares), before any runtime
    sizes its thread pools from what it can see."""
    cpus = os.environ.get("EDGEKIT_WORKER_CPUS")
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cpu) for cpu in cpus.split(",")})


def _checkpoint(results: Path, index: int, artifact) -> None:
    """The verified artifact before its repair: what the parent keeps if the repair kills this process."""
    from edgekit import isolation

    _write(results / f"{index}.checkpoint", isolation.Outcome(artifact=artifact))


def _source(context):
    """The parent's SourceModel; its model object is loaded from the file only if a step needs it
    (a search or repair runs the source; a static-batch export re-traces a Keras model)."""
    from edgekit.converters.source import SourceModel, load_source

    class LazySource(SourceModel):
        @property
        def handle(self):
            if self.__dict__.get("_handle") is None and self.__dict__.get("_file") is not None:
                # A torch program keeps the input names the parent gave it (input_names=).
                names = [spec.name for spec in self.inputs] if self.format == "torch" else None
                self.__dict__["_handle"] = load_source(self.__dict__["_file"], input_names=names).handle
            return self.__dict__.get("_handle")

        @handle.setter
        def handle(self, value):
            self.__dict__["_handle"] = value

    parent = context.source
    source = LazySource(parent.format, parent.path, parent.inputs, parent.outputs, parent.sha256)
    source.__dict__["_file"] = context.shared.get("source_file") or parent.path
    return source


def _exports(source, context, fmt):
    from edgekit.converters.exports import Exports
    from edgekit.errors import ConversionError

    class SharedExports(Exports):
        """The parent's SavedModel; this group's own ONNX export (tf2onnx runs in the child)."""

        def saved_model(self, batch: int | None = None) -> Path:
            if batch is None and "saved_model" in context.shared:
                return context.shared["saved_model"]
            if batch is None and "saved_model_error" in context.shared:
                raise ConversionError(context.shared["saved_model_error"])
            return super().saved_model(batch)  # a static-batch export is this group's own

        def onnx_fp32(self) -> Path:
            from edgekit import timings

            with timings.timed("export"):  # the first onnx artifact pays for tf2onnx; the others reuse it
                return super().onnx_fp32()

    workdir = context.staging / ".exports" / fmt.value
    workdir.mkdir(parents=True, exist_ok=True)
    return SharedExports(source, workdir)


def _write(path: Path, outcome) -> None:
    partial = path.with_suffix(".partial")
    partial.write_bytes(pickle.dumps(outcome))
    os.replace(partial, path)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""One inference worker process: `python -m edgekit.serving.worker FD`.

It hosts one artifact on one of the benchmark backends (edgekit.benchmarks), so the
server runs exactly the code `edgekit bench` measured. A runtime that crashes or hangs
takes only this process down; the server starts another. Messages are pickled dicts on
a socket inherited as file descriptor FD (the server and its workers are one program):

    server -> worker: {"path", "runtime", "device", "providers", "threads", "precision"}
    worker -> server: {"ready": describe(), "notes": [...]}  or  {"error": "..."}
    then, repeatedly:  {"feeds": {name: array}}  ->  {"outputs": {name: array}} or {"error": "..."}
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def serve(connection: Any) -> None:
    from edgekit._deps import disable_telemetry
    from edgekit.benchmarks.base import DeviceUnavailable
    from edgekit.benchmarks.registry import backend_class

    disable_telemetry()
    job = connection.recv()
    notes: list[str] = []
    try:
        cls = backend_class(job["runtime"])
        options = dict(threads=job.get("threads"), precision=job.get("precision"))
        backend = cls(Path(job["path"]), device=job["device"], providers=tuple(job["providers"]), **options)
        try:
            backend.load()
        except DeviceUnavailable as exc:
            # Said in the status and the log, never silent: this host lacks the target's device.
            notes.append(f"running on the CPU: {exc}")
            backend = cls(Path(job["path"]), device="CPU", providers=("CPUExecutionProvider",), **options)
            backend.load()
    except Exception as exc:  # the artifact cannot be served: the server marks the version failed
        connection.send({"error": _one_line(exc)})
        return
    connection.send({"ready": backend.describe(), "notes": notes})
    while True:
        try:
            message = connection.recv()
        except EOFError:  # the server went away
            return
        if message is None:
            break
        try:
            connection.send({"outputs": backend.infer(message["feeds"])})
        except Exception as exc:  # one request's failure; the worker keeps serving
            connection.send({"error": _one_line(exc)})
    backend.close()


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"


def main() -> None:
    from multiprocessing.connection import Connection

    serve(Connection(int(sys.argv[1])))


if __name__ == "__main__":
    main()

"""The `edgekit serve` command (registered in edgekit.cli); everything it does is in edgekit.serving."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from edgekit.errors import InputError


def serve(
    path: Annotated[Optional[Path], typer.Argument(help="A build directory (with manifest.json) or a model store (STORE/NAME/<version>/).")] = None,
    target: Annotated[Optional[str], typer.Option("-t", "--target", help="Which target's artifact serves (default: the first that passed verification).")] = None,
    format: Annotated[Optional[str], typer.Option("-f", "--format", help="tflite | onnx | openvino (default: the target's first verified one).")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="API port (0: a free one, printed at start).")] = 8501,
    admin_port: Annotated[Optional[int], typer.Option("--admin-port", help="Admin port, always on 127.0.0.1 (default: --port + 1).")] = None,
    workers: Annotated[int, typer.Option("--workers", help="Inference worker processes per served version.")] = 1,
    policy: Annotated[str, typer.Option("--policy", help="Version policy: latest, all, or pinned=V[,V...].")] = "latest",
    batch_max: Annotated[int, typer.Option("--batch-max", help="Dynamic batching: rows per runtime call (1: off).")] = 1,
    batch_delay_ms: Annotated[float, typer.Option("--batch-delay-ms", help="Dynamic batching: longest wait for more requests.")] = 2.0,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", help="Largest request body accepted.")] = 8 * 2**20,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds one inference may take before its worker is replaced.")] = 30.0,
    poll: Annotated[float, typer.Option("--poll", help="Seconds between checks of the store for new versions (0: only on reload).")] = 2.0,
    rollback: Annotated[Optional[str], typer.Option("--rollback", help="Ask the running server to switch model NAME back to its previous version, then exit.")] = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Log every request and the workers' output to stderr.")] = False,
) -> None:
    """Serve verified artifacts over TF Serving REST and KServe v2, with versions, rollback and /metrics."""
    if rollback is not None:
        from edgekit.serving.admin import rollback as ask_rollback

        answer = ask_rollback(rollback, admin_port if admin_port is not None else port + 1)
        print(json.dumps(answer))
        print(f"{answer['model']}: serving version {answer['to']} (version {answer['from']} held back)", file=sys.stderr)
        return
    if path is None:
        raise InputError("serve: pass a build directory or a model store (or --rollback NAME)")
    from edgekit.serving.manager import VersionPolicy
    from edgekit.serving.server import Listen, serve as run_server
    from edgekit.serving.version import ServeSettings

    settings = ServeSettings(target=target, format=format, workers=workers, batch_max=batch_max,
                             batch_delay_ms=batch_delay_ms, timeout=timeout)
    listen = Listen(host=host, port=port, admin_port=admin_port, max_body_bytes=max_body_bytes, poll_s=poll)
    run_server(path, settings, listen, VersionPolicy.parse(policy), verbose=verbose)


def publish_build(manifest, store: Path) -> Path:
    """`edgekit build --publish STORE`: the built manifest's verified artifacts become the next version."""
    from edgekit.serving.store import publish

    version = publish(manifest, store)
    print(f"published {version.parent.name} version {version.name} to {store}", file=sys.stderr)
    return version

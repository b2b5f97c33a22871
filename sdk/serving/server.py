"""`edgekit.serving.serve`: bind, load every model, answer, poll the store, stop cleanly.

One uvicorn server listens on two sockets: the API (HOST:PORT, 127.0.0.1 unless told)
and the admin endpoints (always 127.0.0.1). Port 0 picks a free port; the line printed
at start names the ports actually bound.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgekit._deps import require
from edgekit.errors import EdgekitError, InputError
from edgekit.serving.manager import ModelManager, VersionPolicy
from edgekit.serving.store import discover
from edgekit.serving.version import ServeSettings

log = logging.getLogger("edgekit.serve")


@dataclass
class Listen:
    host: str = "127.0.0.1"
    port: int = 8501
    admin_port: int | None = None  # default: port + 1 (0 with port 0)
    max_body_bytes: int = 8 * 2**20
    poll_s: float = 2.0  # how often the store is checked for new versions; 0: only on POST /admin/reload


def serve(path: Path, settings: ServeSettings, listen: Listen, policy: VersionPolicy, *, verbose: bool = False) -> None:
    """Serve the models under `path` until interrupted (SIGINT/SIGTERM)."""
    uvicorn = require("uvicorn")
    require("starlette")
    from edgekit.serving.app import Api
    from edgekit.serving.metrics import Metrics

    _setup_logging(verbose)
    sources = discover(path)
    _check_choice(sources, settings)
    if settings.workers < 1:
        raise InputError(f"--workers must be at least 1, got {settings.workers}")
    if settings.batch_max < 1:
        raise InputError(f"--batch-max must be at least 1, got {settings.batch_max}")
    if settings.log_dir is None and not verbose:
        settings.log_dir = Path(tempfile.mkdtemp(prefix="edgekit-serve-"))
    api_socket = _bind(listen.host, listen.port, "--host/--port")
    admin_port = listen.admin_port if listen.admin_port is not None else (listen.port + 1 if listen.port else 0)
    admin_socket = _bind("127.0.0.1", admin_port, "--admin-port")
    ports = {"api": api_socket.getsockname()[1], "admin": admin_socket.getsockname()[1]}
    metrics = Metrics()
    manager = ModelManager(sources, policy, settings, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await manager.sync()
        poller = asyncio.get_running_loop().create_task(_poll(manager, listen.poll_s)) if listen.poll_s > 0 else None
        host = listen.host if ":" not in listen.host else f"[{listen.host}]"
        served = ", ".join(f"{m.name} v{m.default}" if m.default else f"{m.name} (no version available)"
                           for m in manager.models.values())
        print(f"edgekit serve: {served} on http://{host}:{ports['api']} (TF Serving REST /v1, KServe v2 /v2, /metrics); "
              f"admin on http://127.0.0.1:{ports['admin']}"
              + (f"; worker logs in {settings.log_dir}" if settings.log_dir else ""), file=sys.stderr, flush=True)
        try:
            yield
        finally:
            if poller is not None:
                poller.cancel()
            await manager.close()

    api = Api(manager, metrics, max_body_bytes=listen.max_body_bytes, admin_port_of=lambda: ports["admin"],
              lifespan=lifespan)
    config = uvicorn.Config(api.app, log_level="info" if verbose else "warning", access_log=verbose,
                            lifespan="on", timeout_graceful_shutdown=10)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again for the previous
    # handler; for a server, being stopped is the normal end, so that handler only notes it.
    stopped = []
    previous = {sig: signal.signal(sig, lambda number, frame: stopped.append(number)) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[api_socket, admin_socket])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started and not stopped:
        raise EdgekitError("the server did not start (the lines above say why)")
    print("edgekit serve: stopped", file=sys.stderr)


def _check_choice(sources, settings: ServeSettings) -> None:
    """--target and --format must name an artifact of each model's newest version: a typo is exit 2, not a failed load."""
    from edgekit.manifest import Manifest
    from edgekit.serving.version import choose_artifact

    for source in sources:
        versions = source.versions()
        manifest = Manifest.read(versions[max(versions)] / "manifest.json")
        try:
            choose_artifact(manifest, settings.target, settings.format)
        except InputError as exc:
            raise InputError(f"model '{source.name}' version {max(versions)}: {exc}") from None


async def _poll(manager: ModelManager, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await manager.sync()
        except Exception as exc:  # a store that is briefly unreadable must not stop the server
            log.error("polling the model store failed: %s", exc)


def _bind(host: str, port: int, option: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say so, and without
    # it Nagle holds each response's second segment for the client's delayed ACK (40 ms per request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(f"{option}: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    return sock


def _setup_logging(verbose: bool) -> None:
    logger = logging.getLogger("edgekit.serve")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("edgekit serve: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.propagate = False

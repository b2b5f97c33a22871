"""Worker processes for one served version: start, call, restart after a crash, stop.

Each worker is `python -m edgekit.serving.worker` with one artifact loaded. Calls block
on a socket, so they run in a small thread pool of their own; the event loop stays free
for HTTP. A worker that dies (a runtime crash, a kill) or hangs past the timeout is
replaced in the background and the request is retried once on another worker, so a
client sees a slower answer, not an error.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("edgekit.serve")


class WorkerCrashed(Exception):
    """The worker process died or stopped answering; the request may be retried elsewhere."""


class WorkerLoadError(Exception):
    """The worker could not load the artifact (the message says why)."""


class InferenceError(Exception):
    """The runtime rejected one request (the worker survived)."""


class Worker:
    """One worker process and the server's end of its socket."""

    def __init__(self, job: dict[str, Any], log_file: Path | None):
        self.job = job
        self.log_file = log_file
        self.process: subprocess.Popen | None = None
        self.connection: Connection | None = None
        self.describe: dict[str, Any] = {}
        self.notes: list[str] = []

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, timeout: float) -> None:
        ours, theirs = socket.socketpair()
        output = open(self.log_file, "ab") if self.log_file else None  # noqa: SIM115 (closed below)
        try:
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "ORT_DISABLE_TELEMETRY": "1"}
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edgekit.serving.worker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=output, stderr=output, env=env,
            )
        finally:
            theirs.close()
            if output:
                output.close()
        self.connection = Connection(ours.detach())
        self.connection.send(self.job)
        reply = self._receive(timeout, "loading")
        if "error" in reply:
            self.stop()
            raise WorkerLoadError(reply["error"])
        self.describe, self.notes = reply["ready"], reply["notes"]

    def call(self, feeds: dict[str, np.ndarray], timeout: float) -> dict[str, np.ndarray]:
        try:
            self.connection.send({"feeds": feeds})
        except OSError as exc:  # BrokenPipe, ConnectionReset: the process is gone
            raise WorkerCrashed(self._death(f"{type(exc).__name__}")) from None
        reply = self._receive(timeout, "inference")
        if "error" in reply:
            raise InferenceError(reply["error"])
        return reply["outputs"]

    def _receive(self, timeout: float, what: str) -> dict[str, Any]:
        try:
            if not self.connection.poll(timeout):
                self.kill()
                raise WorkerCrashed(f"worker {self.pid} did not finish {what} within {timeout:g} s and was stopped")
            return self.connection.recv()
        except (EOFError, OSError):
            raise WorkerCrashed(self._death("connection closed")) from None

    def _death(self, how: str) -> str:
        try:
            code = self.process.wait(timeout=5) if self.process else None
        except subprocess.TimeoutExpired:  # its socket closed but it lives on: stop it
            self.kill()
            code = self.process.returncode
        if code is not None and code < 0:
            import signal

            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
        elif code is not None:
            how = f"exited with status {code}"
        return f"worker {self.pid} {how}"

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)

    def stop(self) -> None:
        try:
            if self.connection:
                self.connection.send(None)
        except OSError:
            pass
        if self.process:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.connection:
            self.connection.close()
            self.connection = None


class WorkerPool:
    """`count` workers for one artifact; `infer` takes an idle one, waits for it, gives it back."""

    def __init__(self, job: dict[str, Any], count: int, *, timeout: float, load_timeout: float,
                 log_file: Path | None, label: str):
        self.job, self.count, self.timeout, self.load_timeout = job, count, timeout, load_timeout
        self.log_file, self.label = log_file, label
        self.workers: list[Worker] = []
        self.restarts = 0
        self.on_restart = None  # called with the reason after each replacement (metrics)
        self._idle: asyncio.Queue[Worker] = asyncio.Queue()
        self._threads = ThreadPoolExecutor(max_workers=count + 2, thread_name_prefix=f"edgekit-{label}")
        self._restarting = 0
        self._closed = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        workers = [Worker(self.job, self.log_file) for _ in range(self.count)]
        results = await asyncio.gather(*(loop.run_in_executor(self._threads, w.start, self.load_timeout)
                                         for w in workers), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            for worker in workers:
                worker.stop()
            self._threads.shutdown(wait=False)
            raise WorkerLoadError(str(failures[0]))
        for worker in workers:
            self.workers.append(worker)
            self._idle.put_nowait(worker)

    @property
    def describe(self) -> dict[str, Any]:
        return self.workers[0].describe if self.workers else {}

    @property
    def notes(self) -> list[str]:
        return self.workers[0].notes if self.workers else []

    def pids(self) -> list[int]:
        return [w.pid for w in self.workers if w.pid]

    async def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        loop = asyncio.get_running_loop()
        for attempt in range(2):
            worker = await self._take()
            call = loop.run_in_executor(self._threads, worker.call, feeds, self.timeout)
            try:
                result = await asyncio.shield(call)
            except asyncio.CancelledError:
                # The worker is still answering in its thread: it is free again only once that is done.
                call.add_done_callback(lambda _: self._idle.put_nowait(worker))
                raise
            except WorkerCrashed as exc:
                self._replace(worker, str(exc))
                if attempt == 1:
                    raise
                continue
            except BaseException:
                self._idle.put_nowait(worker)
                raise
            self._idle.put_nowait(worker)
            return result
        raise AssertionError("unreachable")

    async def _take(self) -> Worker:
        deadline = time.monotonic() + self.timeout + self.load_timeout
        while True:
            if not self.workers and not self._restarting:
                raise WorkerCrashed(f"{self.label}: no worker left running (see the log)")
            try:
                return await asyncio.wait_for(self._idle.get(), timeout=0.5)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise WorkerCrashed(f"{self.label}: no worker free within {self.timeout + self.load_timeout:g} s") from None

    def _replace(self, dead: Worker, reason: str) -> None:
        if dead in self.workers:
            self.workers.remove(dead)
        dead.kill()
        if self._closed:
            return
        self.restarts += 1
        self._restarting += 1
        log.warning("%s: %s; starting a replacement", self.label, reason)
        if self.on_restart:
            self.on_restart(reason)
        asyncio.get_running_loop().create_task(self._start_replacement())

    async def _start_replacement(self) -> None:
        worker = Worker(self.job, self.log_file)
        try:
            await asyncio.get_running_loop().run_in_executor(self._threads, worker.start, self.load_timeout)
        except (WorkerLoadError, WorkerCrashed, OSError) as exc:
            log.error("%s: the replacement worker failed to start: %s", self.label, exc)
            return
        finally:
            self._restarting -= 1
        if self._closed:
            worker.stop()
            return
        self.workers.append(worker)
        self._idle.put_nowait(worker)

    async def close(self) -> None:
        self._closed = True
        loop = asyncio.get_running_loop()
        workers, self.workers = self.workers, []
        await asyncio.gather(*(loop.run_in_executor(self._threads, w.stop) for w in workers))
        self._threads.shutdown(wait=False)

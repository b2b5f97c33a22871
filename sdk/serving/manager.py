"""Which versions of which models serve: the version policy, rollouts and rollbacks.

Version policy, in TF Serving's terms: `latest` serves the highest version, `all` every
version (a request without a version gets the highest), `pinned` the versions named.
A new version is loaded, its files hashed against the manifest and each worker warmed
up before traffic moves to it; the version it replaces keeps answering the requests it
already has and closes after the last one. A version that fails to load is never
routed to: it is listed in the status with the reason, and the previous one stays.
A rollback holds the serving version back, so the policy picks the one before it.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.errors import InputError
from edgekit.serving.errors import RequestError
from edgekit.serving.store import ModelSource
from edgekit.serving.version import ServedVersion, ServeSettings

log = logging.getLogger("edgekit.serve")

# TF Serving's ModelVersionStatus states.
LOADING, AVAILABLE, UNLOADING, END = "LOADING", "AVAILABLE", "UNLOADING", "END"


@dataclass(frozen=True)
class VersionPolicy:
    kind: str = "latest"  # latest | all | pinned
    versions: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        """`latest`, `all`, or `pinned=3` / `pinned=2,3`."""
        kind, _, rest = text.partition("=")
        kind = kind.strip()
        if kind in ("latest", "all") and not rest:
            return cls(kind)
        if kind == "pinned":
            try:
                versions = tuple(sorted({int(v) for v in rest.split(",") if v.strip()}))
            except ValueError:
                versions = ()
            if versions and all(v > 0 for v in versions):
                return cls(kind, versions)
        raise InputError(f"--policy {text!r}: accepted: latest, all, pinned=V[,V...] (positive version numbers)")

    def wanted(self, candidates: list[int]) -> list[int]:
        if self.kind == "latest":
            return candidates[-1:]
        if self.kind == "all":
            return list(candidates)
        return [v for v in candidates if v in self.versions]


@dataclass
class VersionRecord:
    version: int
    folder: Path
    state: str = LOADING
    error: str | None = None
    served: ServedVersion | None = None


@dataclass
class ServedModel:
    source: ModelSource
    records: dict[int, VersionRecord] = field(default_factory=dict)
    default: int | None = None  # the version a request without a version gets
    held_back: set[int] = field(default_factory=set)  # rolled back from: not served again

    @property
    def name(self) -> str:
        return self.source.name

    def available(self) -> list[int]:
        return sorted(v for v, r in self.records.items() if r.state == AVAILABLE)


class ModelManager:
    def __init__(self, sources: list[ModelSource], policy: VersionPolicy, settings: ServeSettings, metrics):
        self.models = {s.name: ServedModel(s) for s in sources}
        self.policy, self.settings, self.metrics = policy, settings, metrics
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task] = set()

    # --- routing (synchronous: no await between choosing a version and counting the request in it)

    def resolve(self, name: str, version: str | None) -> ServedVersion:
        model = self.models.get(name)
        if model is None:
            served = ", ".join(sorted(self.models)) or "none"
            raise RequestError(404, "unknown_model", "model", f"model '{name}' is not served (served: {served})")
        if version is None:
            if model.default is None:
                raise RequestError(503, "unavailable", "model", f"model '{name}' has no version available now "
                                   f"(see GET /v1/models/{name} for each version's state)")
            served = model.records[model.default].served
        else:
            if not version.isdigit():
                raise RequestError(400, "bad_version", "version", f"version '{version}': expected a positive integer")
            record = model.records.get(int(version))
            if record is None or record.state != AVAILABLE:
                state = f" (its state: {record.state}{': ' + record.error if record and record.error else ''})" if record else ""
                raise RequestError(404, "unknown_version", "version", f"version {version} of model '{name}' is not "
                                   f"served{state}; served versions: {', '.join(map(str, model.available())) or 'none'}")
            served = record.served
        assert served is not None
        return served

    # --- loading and switching

    async def sync(self) -> None:
        """Bring every model to what the policy wants from the versions on disk."""
        async with self._lock:
            for model in self.models.values():
                await self._sync_model(model)

    async def _sync_model(self, model: ServedModel) -> None:
        on_disk = model.source.versions()
        while True:
            candidates = [v for v in on_disk if v not in model.held_back
                          and not (v in model.records and model.records[v].error)]
            wanted = self.policy.wanted(candidates)
            to_load = [v for v in wanted if v not in model.records or model.records[v].state != AVAILABLE]
            if not to_load:
                break
            await asyncio.gather(*(self._load(model, v, on_disk[v]) for v in to_load))
            if all(model.records[v].state == AVAILABLE for v in to_load):
                break  # else: a failed version is out of the candidates; ask the policy again
        keep = {v for v in wanted if model.records[v].state == AVAILABLE}
        current = model.records.get(model.default) if model.default is not None else None
        if not keep and current is not None and current.state == AVAILABLE:
            # Availability first, as TF Serving does: nothing the policy allows could load, so the
            # version serving now goes on serving rather than leaving the model with none.
            log.warning("%s: keeping version %s: no version the policy allows is loadable", model.name, model.default)
            keep = {model.default}
        new_default = max(keep, default=None)
        if new_default != model.default:
            log.info("%s: traffic moves from version %s to %s", model.name, model.default, new_default)
        model.default = new_default
        for version, record in list(model.records.items()):
            if record.state == AVAILABLE and version not in keep:
                self._unload(model, record)

    async def _load(self, model: ServedModel, version: int, folder: Path) -> None:
        record = VersionRecord(version, folder)
        model.records[version] = record
        self.metrics.versions.labels(model.name, str(version), LOADING).set(1)
        try:
            served = ServedVersion(model.name, version, folder, self.settings, self.metrics)
            await served.load()
        except Exception as exc:  # any reason at all: this version is not served, the others are
            record.state, record.error = END, _one_line(exc)
            log.error("%s version %s failed to load and is not served: %s", model.name, version, record.error)
        else:
            record.state, record.served = AVAILABLE, served
            for note in served.notes:
                log.warning("%s version %s: %s", model.name, version, note)
            log.info("%s version %s available: %s/%s on %s %s, %d worker(s)", model.name, version,
                     served.artifact.target, served.artifact.format, served.artifact.runtime, served.labels["device"],
                     self.settings.workers)
        self.metrics.versions.labels(model.name, str(version), LOADING).set(0)
        self.metrics.versions.labels(model.name, str(version), record.state).set(1 if record.state == AVAILABLE else 0)

    def _unload(self, model: ServedModel, record: VersionRecord) -> None:
        record.state = UNLOADING
        served, record.served = record.served, None
        self.metrics.versions.labels(model.name, str(record.version), AVAILABLE).set(0)

        async def close() -> None:
            await served.drain_and_close()
            record.state = END
            log.info("%s version %s unloaded", model.name, record.version)

        task = asyncio.get_running_loop().create_task(close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def rollback(self, name: str) -> dict:
        async with self._lock:
            model = self.models.get(name)
            if model is None:
                raise RequestError(404, "unknown_model", "model", f"model '{name}' is not served "
                                   f"(served: {', '.join(sorted(self.models)) or 'none'})")
            current = model.default
            earlier = [v for v in model.source.versions() if current is not None and v < current
                       and v not in model.held_back and not (v in model.records and model.records[v].error)]
            if current is None or not earlier:
                raise RequestError(409, "no_earlier_version", "model",
                                   f"model '{name}': no earlier loadable version to roll back to (serving: {current})")
            model.held_back.add(current)
            await self._sync_model(model)
            if model.default is None or model.default >= current:
                model.held_back.discard(current)
                await self._sync_model(model)
                raise RequestError(409, "rollback_failed", "model",
                                   f"model '{name}': the earlier versions failed to load; still serving {model.default}")
            return {"model": name, "from": current, "to": model.default, "held_back": sorted(model.held_back)}

    async def close(self) -> None:
        async with self._lock:
            for model in self.models.values():
                for record in model.records.values():
                    if record.served is not None:
                        self._unload(model, record)
            if self._closing:
                await asyncio.gather(*list(self._closing), return_exceptions=True)

    # --- status

    def status(self, name: str) -> list[dict]:
        model = self.models[name]
        return [{"version": r.version, "state": r.state, "error": r.error, "default": r.version == model.default,
                 "held_back": r.version in model.held_back, **({"served": r.served.describe()} if r.served else {})}
                for r in sorted(model.records.values(), key=lambda r: r.version)]

    @property
    def ready(self) -> bool:
        return bool(self.models) and all(m.default is not None for m in self.models.values())


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:400] if text else type(exc).__name__

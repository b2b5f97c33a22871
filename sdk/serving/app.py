"""The ASGI app: TF Serving REST (/v1), KServe v2 (/v2), /metrics, and the admin endpoints.

Every model and version is looked up among those loaded; no endpoint reads a path, or
anything else from the file system, from the request. Admin endpoints answer only on the
admin socket, which is bound to 127.0.0.1, and only to loopback clients; elsewhere they
do not exist (404).
"""
from __future__ import annotations

import ipaddress
import json
import logging
import re
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from edgekit.serving import kserve, tfserving
from edgekit.serving.errors import RequestError
from edgekit.serving.manager import ModelManager
from edgekit.serving.pool import InferenceError, WorkerCrashed

log = logging.getLogger("edgekit.serve")

# /v1/models/NAME[/versions/V][/metadata | :predict]
_TFS_PATH = re.compile(r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?(?P<suffix>/metadata|:predict|:[a-z]+)?$")


class Api:
    def __init__(self, manager: ModelManager, metrics, *, max_body_bytes: int, admin_port_of, lifespan):
        self.manager, self.metrics, self.max_body_bytes = manager, metrics, max_body_bytes
        self.admin_port_of = admin_port_of  # () -> the admin socket's port (known once bound)
        routes = [
            Route("/v1/models/{rest:path}", self.tfserving, methods=["GET", "POST"]),
            Route("/v2", self.server_metadata, methods=["GET"]),
            Route("/v2/health/live", self.live, methods=["GET"]),
            Route("/v2/health/ready", self.ready, methods=["GET"]),
            Route("/v2/models/{name}", self.model_metadata, methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}", self.model_metadata, methods=["GET"]),
            Route("/v2/models/{name}/ready", self.model_ready, methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}/ready", self.model_ready, methods=["GET"]),
            Route("/v2/models/{name}/infer", self.infer, methods=["POST"]),
            Route("/v2/models/{name}/versions/{version}/infer", self.infer, methods=["POST"]),
            Route("/metrics", self.prometheus, methods=["GET"]),
            Route("/admin/status", self.admin_status, methods=["GET"]),
            Route("/admin/reload", self.admin_reload, methods=["POST"]),
            Route("/admin/models/{name}/rollback", self.admin_rollback, methods=["POST"]),
        ]
        self.app = Starlette(routes=routes, lifespan=lifespan,
                             exception_handlers={404: _not_found, 405: _not_allowed})

    # --- TF Serving REST

    async def tfserving(self, request: Request) -> Response:
        match = _TFS_PATH.match(request.path_params["rest"])
        if not match:
            return _error(RequestError(404, "not_found", "path", "expected /v1/models/NAME[/versions/V][/metadata|:predict]"))
        name, version, suffix = match["name"], match["version"], match["suffix"]
        if request.method == "POST":
            if suffix != ":predict":
                return _error(RequestError(404, "not_found", "path", f"{suffix or 'POST'}: only :predict is served "
                                           "(classify and regress take tf.Example inputs, which edgekit does not)"))
            return await self._infer(request, "tfserving", name, version, self._tfs_predict)
        try:
            if suffix == "/metadata":
                served = self.manager.resolve(name, version)
                extra = {"labels": served.labels_list, "artifact": served.describe()}
                return JSONResponse(tfserving.metadata(name, served.version, served.inputs, served.outputs, extra))
            if suffix is not None:
                raise RequestError(404, "not_found", "path", f"GET {suffix}: accepted: /v1/models/NAME[/versions/V][/metadata]")
            if name not in self.manager.models:
                self.manager.resolve(name, None)  # raises the 404 that names the served models
            records = self.manager.status(name)
            if version is not None:
                records = [r for r in records if str(r["version"]) == version]
                if not records:
                    raise RequestError(404, "unknown_version", "version", f"version {version} of model '{name}' is not known")
            return JSONResponse(tfserving.version_status(records))
        except RequestError as exc:
            return self._rejected(exc, name if name in self.manager.models else "", version)

    @staticmethod
    def _tfs_predict(served, body: Any) -> tuple[dict, Any]:
        arrays, row = tfserving.parse_predict(body, served.inputs)
        return arrays, lambda outputs: tfserving.predict_response(outputs, row)

    # --- KServe v2

    async def server_metadata(self, request: Request) -> Response:
        from edgekit import __version__

        return JSONResponse({"name": "edgekit", "version": __version__, "extensions": ["classification"]})

    async def live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(self, request: Request) -> Response:
        ready = self.manager.ready
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    async def model_metadata(self, request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")
        try:
            served = self.manager.resolve(name, version)
        except RequestError as exc:
            return self._rejected(exc, name if name in self.manager.models else "", version)
        model = self.manager.models[name]
        return JSONResponse({
            "name": name, "versions": [str(v) for v in model.available()],
            "platform": f"edgekit_{served.artifact.runtime}",
            "inputs": [kserve.tensor_metadata(s) for s in served.inputs],
            "outputs": [kserve.tensor_metadata(s) for s in served.outputs],
            "parameters": {"labels": served.labels_list, "version": str(served.version),
                           "target": served.artifact.target, "format": served.artifact.format},
        })

    async def model_ready(self, request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")
        try:
            served = self.manager.resolve(name, version)
        except RequestError as exc:
            if exc.status == 503:
                return JSONResponse({"name": name, "ready": False}, status_code=503)
            return self._rejected(exc, name if name in self.manager.models else "", version)
        return JSONResponse({"name": name, "version": str(served.version), "ready": True})

    async def infer(self, request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")
        return await self._infer(request, "kserve", name, version, self._kserve_infer)

    @staticmethod
    def _kserve_infer(served, body: Any) -> tuple[dict, Any]:
        arrays, wanted = kserve.parse_infer(body, served.inputs, served.outputs)
        request_id = body.get("id")
        return arrays, lambda outputs: kserve.infer_response(served.model, served.version, request_id, outputs,
                                                              wanted, served.labels_list)

    # --- one inference, either protocol

    async def _infer(self, request: Request, protocol: str, name: str, version: str | None, parse) -> Response:
        started = time.perf_counter()
        if request.headers.get("inference-header-content-length"):
            return self._rejected(RequestError(400, "bad_request", "body", "binary tensor data is not accepted; "
                                               "send the tensors as JSON 'data'"), "", None)
        try:
            body = await self._read_json(request)
            served = self.manager.resolve(name, version)
        except RequestError as exc:
            return self._rejected(exc, name if name in self.manager.models else "", version)
        labels = served.labels
        served.enter()  # counted before the first await: a rollout waits for this request
        inflight = self.metrics.inflight.labels(**labels)
        inflight.inc()
        try:
            arrays, respond = parse(served, body)
            if served.drift is not None:
                served.drift.observe(arrays)
            outputs = await served.predict(arrays)
            response = JSONResponse(respond(outputs))
        except RequestError as exc:
            return self._rejected(exc, name, None, served)
        except InferenceError as exc:
            return self._rejected(RequestError(500, "runtime_error", "inputs", f"the runtime failed on this request: {exc}"),
                                  name, None, served)
        except WorkerCrashed as exc:
            return self._rejected(RequestError(503, "worker_crash", "model", f"the runtime crashed twice on this request: {exc}"),
                                  name, None, served)
        finally:
            served.exit()
            inflight.dec()
        self.metrics.requests.labels(**labels, protocol=protocol, code="200").inc()
        self.metrics.latency.labels(**labels).observe(time.perf_counter() - started)
        return response

    async def _read_json(self, request: Request) -> Any:
        limit = self.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise RequestError(413, "too_large", "body", f"body: {declared} bytes is over the limit of {limit} bytes "
                               "(edgekit serve --max-body-bytes)")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(413, "too_large", "body", f"body: over the limit of {limit} bytes (edgekit serve --max-body-bytes)")
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks))
        except json.JSONDecodeError as exc:
            raise RequestError(400, "bad_json", "body", f"body: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
        except UnicodeDecodeError:
            raise RequestError(400, "bad_json", "body", "body: not UTF-8 text; send a JSON document") from None

    def _rejected(self, exc: RequestError, model: str, version: str | None, served=None) -> Response:
        if served is not None:
            labels = served.labels
        else:  # not routed to a version: no runtime or device; made-up names are not labels
            known = model in self.manager.models
            labels = {"model": model if known else "", "version": version if known and version and version.isdigit() else "",
                      "runtime": "", "device": ""}
        self.metrics.errors.labels(**labels, kind=exc.kind).inc()
        return _error(exc)

    # --- monitoring

    async def prometheus(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=self.metrics.content_type)

    # --- admin: the admin socket only, loopback clients only

    def _is_admin(self, request: Request) -> bool:
        server, client = request.scope.get("server"), request.client
        if not server or server[1] != self.admin_port_of() or client is None:
            return False
        try:
            return ipaddress.ip_address(client.host).is_loopback
        except ValueError:
            return False

    async def admin_status(self, request: Request) -> Response:
        if not self._is_admin(request):
            return await _not_found(request, None)
        return JSONResponse({name: self.manager.status(name) for name in self.manager.models})

    async def admin_reload(self, request: Request) -> Response:
        if not self._is_admin(request):
            return await _not_found(request, None)
        await self.manager.sync()
        return JSONResponse({name: self.manager.status(name) for name in self.manager.models})

    async def admin_rollback(self, request: Request) -> Response:
        if not self._is_admin(request):
            return await _not_found(request, None)
        try:
            return JSONResponse(await self.manager.rollback(request.path_params["name"]))
        except RequestError as exc:
            return _error(exc)


def _error(exc: RequestError) -> Response:
    return JSONResponse(exc.body(), status_code=exc.status)


async def _not_found(request: Request, exc) -> Response:
    return _error(RequestError(404, "not_found", "path", f"{request.url.path}: no such endpoint; accepted: "
                               "/v1/models/NAME[...], /v2/health/{live,ready}, /v2/models/NAME[...], /metrics"))


async def _not_allowed(request: Request, exc) -> Response:
    return _error(RequestError(405, "method", "method", f"{request.method} {request.url.path}: method not allowed"))

"""The admin client: `edgekit serve --rollback NAME` asks the running server, on loopback, to switch back."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

from edgekit.errors import InputError


def rollback(name: str, admin_port: int, timeout: float = 300.0) -> dict:
    """POST /admin/models/NAME/rollback on 127.0.0.1:ADMIN_PORT; the server's answer, or an InputError saying why not."""
    return _post(f"http://127.0.0.1:{admin_port}/admin/models/{urllib.request.quote(name, safe='')}/rollback", timeout)


def reload(admin_port: int, timeout: float = 300.0) -> dict:
    """POST /admin/reload: load what the store holds now (new versions) before the next poll."""
    return _post(f"http://127.0.0.1:{admin_port}/admin/reload", timeout)


def _post(url: str, timeout: float) -> dict:
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except (ValueError, AttributeError):
            message = exc.reason
        raise InputError(f"the server refused: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InputError(f"no edgekit server answers on its admin endpoint {url.split('/admin')[0]} ({reason}); "
                         "start `edgekit serve` first, or pass the --admin-port it uses") from None

"""A small synchronous JSON client of a running kpiguard (standard library only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"


class ApiError(Exception):
    """A request the service refused or could not answer; ``status`` 0 when it could not be reached."""

    def __init__(self, method: str, path: str, status: int, message: str, field: str | None = None) -> None:
        self.status = status
        self.field = field
        self.message = message
        where = f" (field {field})" if field else ""
        super().__init__(f"{method} {path}: {status or 'unreachable'}: {message}{where}")


class Api:
    """Talks JSON to one kpiguard base URL, with an optional bearer token."""

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 15.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._timeout = timeout

    def request(self, method: str, path: str, body: Any = None,
                params: Mapping[str, str] | None = None) -> tuple[int, Any]:
        """Send one request; the status and the parsed JSON body (None when empty). Never raises on 4xx/5xx."""
        url = self.url + path + (f"?{urllib.parse.urlencode(params)}" if params else "")
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as resp:
                return resp.status, _parse(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _parse(exc.read())
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(method, path, 0, f"cannot reach {self.url}: {reason}") from exc

    def call(self, method: str, path: str, body: Any = None, params: Mapping[str, str] | None = None,
             ok: tuple[int, ...] = (200, 201)) -> Any:
        """Send one request and return its JSON; ApiError with the service's message for another status."""
        status, data = self.request(method, path, body, params)
        if status not in ok:
            err = data.get("error", {}) if isinstance(data, dict) else {}
            raise ApiError(method, path, status, err.get("message") or str(data), err.get("field"))
        return data

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """GET, expecting 200."""
        return self.call("GET", path, params=params, ok=(200,))

    def post(self, path: str, body: Any) -> Any:
        """POST JSON, expecting 200 or 201."""
        return self.call("POST", path, body)


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")

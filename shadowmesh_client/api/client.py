"""A small blocking client of the local API (``doctor``, tests): GET/POST JSON with the bearer token.

May import: the standard library only.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from shadowmesh_client.errors import ShadowMeshError


class ApiUnavailable(ShadowMeshError, ConnectionError):
    """No daemon answers, or it refused the request."""


class ApiClient:
    def __init__(self, url: str, *, token: str | None = None, token_file: str | None = None,
                 timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        if token is None and token_file:
            try:
                token = Path(token_file).read_text().strip()
            except OSError as exc:
                raise ApiUnavailable(f"cannot read the API token file {token_file}: {exc.strerror}") from None
        self.token = token
        self.timeout = timeout

    def _request(self, path: str, body: dict | None = None) -> object:
        req = urllib.request.Request(self.url + path, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:  # noqa: S310 - the user's own loopback API
                data = r.read()
                return json.loads(data) if r.headers.get_content_type() == "application/json" else data.decode()
        except urllib.error.HTTPError as exc:
            raise ApiUnavailable(f"HTTP {exc.code}: {exc.read().decode(errors='replace')[:200]}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ApiUnavailable(str(getattr(exc, "reason", exc))) from None

    def get(self, path: str):
        return self._request(path)

    def post(self, path: str, body: dict):
        return self._request(path, body)

"""The local API and web dashboard of the daemons (issue 16; docs/api.md).

    settings.py   ApiSettings: listen (loopback HOST:PORT or unix:PATH), token file, bounds, intervals
    auth.py       token file (0600), bearer check, Origin and Host checks
    telemetry.py  bounded traffic history, event log + log capture, SSE fan-out
    views.py      NodeView / RelayView: what the API reads from a running daemon
    server.py     ApiServer (aiohttp, in the daemon's loop): routes, SSE, the sampler task
    openapi.py    the OpenAPI document
    client.py     a small blocking client (doctor, tests)
    static/       the dashboard: index.html, app.js, style.css (no CDN, no build step)

May import: agents, errors, aiohttp. node/ and relay/ import this package (never the other way round).
"""

from shadowmesh_client.api.settings import DEFAULT_NODE_API, DEFAULT_RELAY_API, ApiSettings

__all__ = ["DEFAULT_NODE_API", "DEFAULT_RELAY_API", "ApiSettings"]

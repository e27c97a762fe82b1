"""HTTP endpoints for Prometheus and the kubelet: /metrics, /healthz, /readyz.

Each endpoint server runs in its own daemon thread (`Endpoints.start`), so a slow scrape never
touches the event loop. ``/readyz`` answers 200 only when every informer has finished its first
list (the cache is synced); ``/healthz`` answers 200 while the process serves at all.
"""

from __future__ import annotations

import http.server
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("Endpoints", "parse_address")


def parse_address(address: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (empty host = all interfaces) into a bind tuple."""
    host, _, port = address.rpartition(":")
    return (host.strip("[]") or "0.0.0.0", int(port))  # noqa: S104 - metrics must be scrapable.


class Endpoints:
    """Serves `routes` (path -> callable returning status, content type, body) on an address."""

    def __init__(
        self, address: str, routes: dict[str, Callable[[], tuple[int, str, bytes]]]
    ) -> None:
        """Bind now (so the port is known); serve after `start`."""
        handler = _handler(routes)
        self._server = http.server.ThreadingHTTPServer(parse_address(address), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()


def _handler(routes: dict[str, Callable[[], tuple[int, str, bytes]]]) -> type[Any]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = routes.get(self.path.split("?", 1)[0])
            status, content_type, body = route() if route else (404, "text/plain", b"not found\n")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name.
            del format, args  # Scrapes and probes every few seconds would flood the log.

    return Handler

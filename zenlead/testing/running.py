"""Run a `app.Controller` in a background thread, for tests, benchmarks and the demo.

`RunningController` starts the controller on its own event loop (an anyio blocking portal) and
stops it on exit like SIGTERM would: the run task is cancelled, the Lease released, informers
and endpoints closed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any, Self

import anyio.from_thread

from zenlead import app, settings

if TYPE_CHECKING:
    import types

__all__ = ("RunningController", "released_lease")


def released_lease(api_client: Any, *, namespace: str, name: str) -> None:
    """Create Lease `namespace/name` with no holder, as a replica that shut down leaves it.

    A controller takes such a Lease at once; a Lease it has never seen it must first watch
    stay absent for a whole lease duration (see `zenlead.election`). Tests that start many
    controllers use this to skip that wait; tests of the wait itself do not.
    """
    from kubernetes import client  # noqa: PLC0415 - the harness's own admin client.

    body: Any = {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"holderIdentity": "", "leaseDurationSeconds": 1},
    }
    client.CoordinationV1Api(api_client).create_namespaced_lease(namespace, body)


class RunningController:
    """A controller running in a thread; use as a context manager."""

    def __init__(self, config: settings.Settings, *, api_client: Any = None) -> None:
        """Prepare a controller with `config` (bind addresses should use port 0)."""
        self.controller = app.Controller(config, api_client=api_client)
        self._stack = contextlib.ExitStack()
        self._future: concurrent.futures.Future[None] | None = None

    def __enter__(self) -> Self:
        """Start the controller; return once its endpoints are bound."""
        portal = self._stack.enter_context(anyio.from_thread.start_blocking_portal("asyncio"))
        self._future, _ = portal.start_task(self.controller.run)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        """Stop the controller and its event loop."""
        self.stop()

    def stop(self) -> None:
        """Cancel the controller and wait for its cleanup. Idempotent."""
        if self._future is not None:
            self._future.cancel()
            with contextlib.suppress(concurrent.futures.CancelledError):
                self._future.result(timeout=30)
            self._future = None
        self._stack.close()

    def wait_synced(self, timeout: float = 30.0) -> None:
        """Block until /readyz answers 200 (all informers listed)."""
        deadline = time.monotonic() + timeout
        while not self.controller.synced():
            if time.monotonic() > deadline:
                raise TimeoutError("controller cache did not sync")
            time.sleep(0.02)

    def scrape(self) -> str:
        """Return the text of /metrics."""
        url = f"http://127.0.0.1:{self.controller.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            body: bytes = response.read()
        return body.decode()

    def get(self, path: str) -> int:
        """Return the HTTP status of GET `path` on the health endpoint."""
        url = f"http://127.0.0.1:{self.controller.health_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

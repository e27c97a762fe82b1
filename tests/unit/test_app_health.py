"""/healthz and /readyz of a controller that is not running: the pool, the loop, the cache."""

from __future__ import annotations

import time
from typing import Any

from zenlead import app, metrics, probing, settings


def controller() -> app.Controller:
    """Return a controller built but not run (nothing connects until `run`)."""
    made = app.Controller(settings.Settings(kubeconfig="/nonexistent"))
    made.pool = probing.Pool(on_change=lambda *_a: None, metrics_=metrics.Metrics())
    return made


class FakeInformer:
    """Just what /readyz reads of an informer."""

    def __init__(self, *, stale: float) -> None:
        """Out of touch for `stale` seconds."""
        self.name = "pods@ns"
        self._stale = stale
        self.synced = type("Flag", (), {"is_set": lambda _self: True})()

    def staleness(self) -> float:
        """Seconds out of touch."""
        return self._stale


def test_healthz_fails_while_the_prober_pool_is_down() -> None:
    """Once the pool has run, /healthz is 503 whenever it is not running."""
    ctl = controller()
    assert ctl._healthz()[0] == 200, "before the pool first starts (start-up)"
    ctl._pool_ran = True
    status, _, body = ctl._healthz()
    assert status == 503
    assert b"prober pool" in body


def test_healthz_fails_when_the_loop_stalls() -> None:
    """A heartbeat older than 10 s means the event loop is wedged."""
    ctl = controller()
    ctl.heartbeat = time.monotonic() - 11
    assert ctl._healthz()[0] == 503


def test_readyz_names_a_stale_informer() -> None:
    """An informer out of touch past the bound fails /readyz and names itself."""
    ctl = controller()
    informers: list[Any] = [FakeInformer(stale=0.0), FakeInformer(stale=12.0)]
    ctl.informers = informers
    status, _, body = ctl._readyz()
    assert status == 503
    assert body.startswith(b"cache stale: pods@ns out of touch for 12s")
    assert ctl.stale_reason() is not None
    informers[1]._stale = 3.0
    assert ctl._readyz()[0] == 200

"""The elector's one-writer rules, on an in-memory Lease and a fake clock."""

from __future__ import annotations

import copy
import time
from typing import Any

import anyio
import pytest

from tests import helpers
from zenlead import election, errors

pytestmark = pytest.mark.anyio


class LeaseApi:
    """An in-memory Lease endpoint with resourceVersion conflicts, like the API server's."""

    def __init__(self, clock: helpers.FakeClock | None = None) -> None:
        """Start without a Lease; `delay` seconds are added to the clock by each call."""
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.clock = clock
        self.delay = 0.0
        self.calls: list[str] = []

    def _tick(self) -> None:
        if self.clock is not None:
            self.clock.advance(self.delay)

    async def get(self, _res: Any, _ns: str, _name: str, **_kw: Any) -> dict[str, Any]:
        """Return a copy of the Lease, or raise NotFoundError."""
        self.calls.append("get")
        self._tick()
        if self.lease is None:
            raise errors.NotFoundError("no lease", status=404)
        return copy.deepcopy(self.lease)

    async def create(self, _res: Any, _ns: str, body: dict[str, Any], **_kw: Any) -> Any:
        """Create the Lease unless it exists."""
        self.calls.append("create")
        self._tick()
        if self.lease is not None:
            raise errors.AlreadyExistsError("exists", status=409)
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)

    async def replace(self, _r: Any, _ns: str, _n: str, body: dict[str, Any], **_kw: Any) -> Any:
        """Replace the Lease if `body` carries the current resourceVersion."""
        self.calls.append("replace")
        self._tick()
        if self.lease is None:
            raise errors.NotFoundError("no lease", status=404)
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise errors.ConflictError("conflict", status=409)
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)

    def put_holder(self, holder: str) -> None:
        """Write the Lease as another client would (a new record)."""
        self.version += 1
        spec = {"holderIdentity": holder, "renewTime": f"t{self.version}", "leaseTransitions": 1}
        self.lease = {
            "metadata": {"name": "lease", "resourceVersion": str(self.version)},
            "spec": spec | {"leaseDurationSeconds": 15},
        }

    @property
    def holder(self) -> str | None:
        """Return the holder recorded in the Lease (None when there is no Lease)."""
        return None if self.lease is None else self.lease["spec"].get("holderIdentity")


async def unavailable(*_a: Any, **_k: Any) -> Any:
    """Fail like an unreachable API server."""
    raise errors.UnavailableError("connection refused")


async def conflict(*_a: Any, **_k: Any) -> Any:
    """Fail like a write on a stale resourceVersion."""
    raise errors.ConflictError("changed", status=409)


@pytest.fixture
def clock() -> helpers.FakeClock:
    """Return a fake monotonic clock."""
    return helpers.FakeClock(100.0)


def make(api: Any, clock: Any, **kwargs: Any) -> election.Elector:
    """Return an elector with lease 15 s, renew deadline 10 s, retry 2 s on `clock`."""
    changes: list[tuple[bool, str]] = []
    elector = election.Elector(
        api,
        namespace="ns",
        name="lease",
        identity="me",
        monotonic=clock,
        on_change=lambda leading, why: changes.append((leading, why)),
        **kwargs,
    )
    elector.changes = changes  # type: ignore[attr-defined]
    return elector


async def test_released_lease_is_taken_at_once(clock: helpers.FakeClock) -> None:
    """A Lease with an empty holder (released on shutdown) is acquired in one round."""
    api = LeaseApi()
    api.put_holder("")
    elector = make(api, clock)
    assert await elector.round() is election.Outcome.HELD
    assert elector.leading
    assert api.holder == "me"


async def test_validity_is_stamped_at_send_time(clock: helpers.FakeClock) -> None:
    """A renewal that takes 3 s to answer leaves 7 s of the 10 s deadline, not 10."""
    api = LeaseApi(clock)
    api.put_holder("")
    api.delay = 1.5  # Each of the GET and the PUT takes 1.5 s.
    elector = make(api, clock)
    await elector.round()
    assert elector.valid_for() == pytest.approx(7.0)


async def test_another_holder_ends_leadership_at_once(clock: helpers.FakeClock) -> None:
    """Reading someone else in the Lease stops writes that round, long before the deadline."""
    api = LeaseApi()
    api.put_holder("")
    elector = make(api, clock)
    await elector.round()
    clock.advance(1.0)
    api.put_holder("other")
    assert await elector.round() is election.Outcome.OTHER
    assert not elector.leading
    assert elector.valid_for() == 0.0
    assert elector.changes[-1] == (False, "other_holder")  # type: ignore[attr-defined]


async def test_other_holder_is_taken_over_only_after_its_duration(
    clock: helpers.FakeClock,
) -> None:
    """A record left unchanged is free after its 15 s duration on our clock, not before."""
    api = LeaseApi()
    api.put_holder("dead")
    elector = make(api, clock)
    assert await elector.round() is election.Outcome.OTHER
    clock.advance(14.9)
    assert await elector.round() is election.Outcome.OTHER
    clock.advance(0.2)
    assert await elector.round() is election.Outcome.HELD
    assert api.lease is not None
    assert api.lease["spec"]["leaseTransitions"] == 2


async def test_missing_lease_is_not_a_free_leadership(clock: helpers.FakeClock) -> None:
    """A Lease never seen must stay absent a whole lease duration before it is created."""
    api = LeaseApi()
    elector = make(api, clock)
    assert await elector.round() is election.Outcome.OTHER
    clock.advance(14.0)
    assert await elector.round() is election.Outcome.OTHER
    assert "create" not in api.calls
    clock.advance(1.1)
    assert await elector.round() is election.Outcome.HELD
    assert api.holder == "me"


async def test_deleted_lease_must_stay_absent_a_full_duration(clock: helpers.FakeClock) -> None:
    """A deletion starts a full lease duration of absence before anyone may create it."""
    api = LeaseApi()
    api.put_holder("leader")
    elector = make(api, clock)
    await elector.round()
    clock.advance(10.0)
    api.lease = None  # Deleted under a live leader.
    assert await elector.round() is election.Outcome.OTHER
    clock.advance(14.9)
    assert await elector.round() is election.Outcome.OTHER
    clock.advance(0.2)
    assert await elector.round() is election.Outcome.HELD


async def test_blind_standby_does_not_take_a_deleted_lease(clock: helpers.FakeClock) -> None:
    """A standby that could not read the Lease for a while still waits after a deletion."""
    api = LeaseApi()
    api.put_holder("leader")
    standby = make(api, clock)
    await standby.round()
    real_get = api.get

    api.get = unavailable  # type: ignore[method-assign]
    for _ in range(10):  # 20 s blind while the leader keeps renewing.
        clock.advance(2.0)
        api.put_holder("leader")
        assert await standby.round() is election.Outcome.FAILED
    api.get = real_get  # type: ignore[method-assign]
    api.lease = None
    assert await standby.round() is election.Outcome.OTHER
    assert "create" not in api.calls


async def test_conflicts_while_leading_stop_writes_at_once(clock: helpers.FakeClock) -> None:
    """A 409 on renewal, or AlreadyExists on re-creating, ends leadership that round."""
    api = LeaseApi()
    api.put_holder("")
    elector = make(api, clock)
    await elector.round()
    real_replace = api.replace

    api.replace = conflict  # type: ignore[method-assign]
    assert await elector.round() is election.Outcome.OTHER
    assert not elector.leading
    api.replace = real_replace  # type: ignore[method-assign]
    assert await elector.round() is election.Outcome.HELD, "our own record: taken back"
    api.lease = None
    real_get = api.get

    async def vanish_then_appear(*_a: Any, **_k: Any) -> Any:
        api.get = real_get  # type: ignore[method-assign]
        api.put_holder("other")  # Someone creates it between our GET and our create.
        raise errors.NotFoundError("gone", status=404)

    api.get = vanish_then_appear  # type: ignore[method-assign]
    assert await elector.round() is election.Outcome.OTHER
    assert not elector.leading


async def test_slow_acquire_is_not_leadership(clock: helpers.FakeClock) -> None:
    """An acquire whose answer comes after its own validity ended does not make us lead."""
    api = LeaseApi(clock)
    api.put_holder("")
    api.delay = 6.0  # GET and PUT: 12 s in all, past the 10 s renew deadline.
    elector = make(api, clock, lease_seconds=30.0)
    await elector.round()
    assert not elector.leading


async def test_recreated_lease_keeps_a_standby_waiting(clock: helpers.FakeClock) -> None:
    """A leader that re-creates its deleted Lease resets the standby's clock."""
    api = LeaseApi()
    api.put_holder("leader")
    standby = make(api, clock)
    for _ in range(20):  # 20 s of the Lease deleted and re-created every second.
        await standby.round()
        clock.advance(0.5)
        api.lease = None
        await standby.round()
        clock.advance(0.5)
        api.put_holder("leader")
    assert not standby.leading
    assert "create" not in api.calls


async def test_leader_recreates_a_deleted_lease_at_once(clock: helpers.FakeClock) -> None:
    """The holder re-creates its Lease on the next round and keeps leading."""
    api = LeaseApi()
    api.put_holder("")
    elector = make(api, clock)
    await elector.round()
    api.lease = None
    clock.advance(2.0)
    assert await elector.round() is election.Outcome.HELD
    assert elector.leading
    assert api.holder == "me"


async def test_failed_renewals_end_leadership_at_the_deadline(clock: helpers.FakeClock) -> None:
    """Renewals that fail keep the replica leading until the deadline, then it stops."""
    api = LeaseApi()
    api.put_holder("")
    elector = make(api, clock)
    await elector.round()

    api.get = unavailable  # type: ignore[method-assign]
    clock.advance(9.0)
    assert await elector.round() is election.Outcome.FAILED
    assert elector.leading
    assert elector.valid_for() == pytest.approx(1.0)
    clock.advance(1.5)
    await elector.round()
    assert not elector.leading
    assert elector.changes[-1] == (False, "renew_deadline")  # type: ignore[attr-defined]


async def test_stale_cache_releases_and_blocks(clock: helpers.FakeClock) -> None:
    """A replica whose cache is stale hands the Lease over and does not take it again."""
    api = LeaseApi()
    api.put_holder("")
    stale: list[str] = []
    elector = make(api, clock, may_lead=lambda: stale[0] if stale else None)
    await elector.round()
    stale.append("cache stale: pods@ns out of touch for 12s")
    assert await elector.round() is None
    assert not elector.leading
    assert api.holder == ""
    assert await elector.round() is None
    assert api.holder == ""
    assert elector.changes[-1] == (False, "stale_cache")  # type: ignore[attr-defined]


async def test_hanging_renew_gives_up_at_the_deadline() -> None:
    """A renewal that hangs is abandoned when the validity runs out (real time)."""

    class Hanging(LeaseApi):
        async def get(self, *_a: Any, **_k: Any) -> dict[str, Any]:
            await anyio.sleep(10)
            return {}

    elector = make(Hanging(), time.monotonic, renew_deadline_seconds=0.3, lease_seconds=2.0)
    elector.leading = True
    elector._valid_until = time.monotonic() + 0.3
    start = time.monotonic()
    assert await elector.round() is election.Outcome.FAILED
    assert 0.2 < time.monotonic() - start < 1.0
    assert not elector.leading


async def test_shutdown_releases_the_lease(clock: helpers.FakeClock) -> None:
    """Cancelling the renew loop (SIGTERM) leaves leadership to `release`, which hands over."""
    api = LeaseApi()
    api.put_holder("")
    elector = make(api, clock)
    async with anyio.create_task_group() as tg:
        tg.start_soon(elector.run)
        await elector.wait_for(leading=True)
        tg.cancel_scope.cancel()
    await elector.release()
    assert api.holder == ""
    assert elector.changes[-1] == (False, "released")  # type: ignore[attr-defined]


async def test_absence_seen_before_a_blind_spell_is_not_counted(
    clock: helpers.FakeClock,
) -> None:
    """Missing, then unreadable while it came back, then missing again: the wait restarts."""
    api = LeaseApi()
    standby = make(api, clock)
    assert await standby.round() is election.Outcome.OTHER  # First seen missing.
    real_get = api.get

    api.get = unavailable  # type: ignore[method-assign]
    clock.advance(20.0)
    assert await standby.round() is election.Outcome.FAILED
    api.get = real_get  # type: ignore[method-assign]
    assert await standby.round() is election.Outcome.OTHER, "must wait a fresh lease duration"
    assert "create" not in api.calls


async def test_seeing_another_holder_ends_any_claim(clock: helpers.FakeClock) -> None:
    """After a conflict and a read of another holder, a deleted Lease is not re-created at once."""
    api = LeaseApi()
    api.put_holder("")
    elector = make(api, clock)
    await elector.round()
    real_replace = api.replace

    api.replace = conflict  # type: ignore[method-assign]
    assert await elector.round() is election.Outcome.OTHER
    api.replace = real_replace  # type: ignore[method-assign]
    api.put_holder("other")
    assert await elector.round() is election.Outcome.OTHER
    api.lease = None
    assert await elector.round() is election.Outcome.OTHER
    assert "create" not in api.calls

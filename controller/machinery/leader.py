"""Leader election on a coordination.k8s.io/v1 Lease, as client-go does it, with its gaps closed.

Kept from client-go (``tools/leaderelection``):

- every write carries the resourceVersion it read, so two candidates can never both win;
- a lease is free when it does not exist, has no holder, or has not *changed* for its
  ``leaseDurationSeconds`` as measured on the local monotonic clock from when this process last
  saw it change: remote timestamps are never compared with the local clock, so skew is harmless;
- ``leaseTransitions`` grows by one each time a different holder takes over;
- acquire retries every ``retry_period`` with jitter; the leader renews every ``retry_period`` and
  gives up when a renewal has not succeeded within ``renew_deadline``; every request is bounded
  by ``max(renew_deadline / 2, 1 s)`` so one hung call cannot eat the deadline;
- renew takes a fast path (update from the last record seen) and falls back to a fresh read
  (counted in ``leader_election_slowpath_total``);
- on a requested stop the lease is released (holder cleared, duration 1 s), as with
  ``ReleaseOnCancel``, so a successor takes over at its next retry instead of after 15 s.

Better than client-go's polling: a follower also *watches* the Lease. Every renewal it sees on
the watch restarts its local expiry clock the moment it arrives (not at its next poll, up to
``2.2 * retry_period`` later), and it wakes exactly when the last renewal it saw expires instead
of at the next jittered poll after that. So after a leader dies without releasing, the follower
takes over ``lease_duration`` after the dead leader's last renewal (plus a request), never a poll
or two later; a release is taken at once. Without watch permission or while the watch is down,
the plain retry timer does the job as in client-go.

Readiness (:meth:`LeaderElector.ready`) says whether the campaign works: a Lease that cannot be
read or created (its namespace does not exist, RBAC forbids it) makes the process unready with
the reason, and is logged at ERROR, instead of leaving a replica that never leads looking ready.

Closed gaps of kubernetes_asyncio's elector: monotonic clock, jitter, transitions, per-request
timeout, release, and a lost lease ends :meth:`LeaderElector.run` with :class:`LeaderElectionLost`
so the owner stops acting at once and the process exits non-zero.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controller.machinery.client import LEASES, ApiError, KubeClient
from metrics import runtime as m

log = logging.getLogger(__name__)

JSON = dict[str, Any]


class LeaderElectionLost(Exception):
    """This process held the lease and could not renew it in time: stop acting, exit."""


class LeaseUnavailable(Exception):
    """The Lease cannot be used as configured (missing namespace, no permission)."""


# Wake this long after the computed expiry, so the attempt never lands a hair before it.
_EXPIRY_MARGIN = 0.02
# The same lease error is logged at most this often (it recurs every retry period).
_REPEAT_LOG_SECONDS = 60.0


@dataclass(frozen=True)
class LeaderElectionConfig:
    """Where the lock lives, who we are, and the three durations (seconds)."""

    lease_name: str
    lease_namespace: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    jitter_factor: float = 1.2
    release_on_stop: bool = True

    def __post_init__(self) -> None:
        for name in ("lease_name", "lease_namespace", "identity"):
            if not getattr(self, name):
                raise ValueError(f"leader election {name} must not be empty")
        if self.retry_period <= 0:
            raise ValueError(f"retry_period must be > 0, got {self.retry_period}")
        if self.jitter_factor < 0:
            raise ValueError(f"jitter_factor must be >= 0, got {self.jitter_factor}")
        if self.lease_duration < 1:
            raise ValueError(f"lease_duration must be >= 1 s, got {self.lease_duration}")
        if self.lease_duration <= self.renew_deadline:
            raise ValueError(
                f"lease_duration ({self.lease_duration}) must be greater than renew_deadline "
                f"({self.renew_deadline})"
            )
        if self.renew_deadline <= self.jitter_factor * self.retry_period:
            raise ValueError(
                f"renew_deadline ({self.renew_deadline}) must be greater than jitter_factor * "
                f"retry_period ({self.jitter_factor} * {self.retry_period})"
            )

    @property
    def request_timeout(self) -> float:
        return max(self.renew_deadline / 2, 1.0)

    @property
    def lease_seconds(self) -> int:
        """``leaseDurationSeconds`` is an integer in the API; round up so it is never shorter."""
        return math.ceil(self.lease_duration)


def _now_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _record(lease: JSON) -> tuple[Any, ...]:
    """The fields whose change proves the holder is alive."""
    spec = lease.get("spec") or {}
    return (
        spec.get("holderIdentity"),
        spec.get("leaseDurationSeconds"),
        spec.get("acquireTime"),
        spec.get("renewTime"),
        spec.get("leaseTransitions"),
    )


class LeaderElector:
    """Campaigns for one Lease until :meth:`stop` or until a held lease is lost."""

    def __init__(self, client: KubeClient, config: LeaderElectionConfig) -> None:
        self.client = client
        self.config = config
        self.leading = asyncio.Event()  # set while this process holds the lease
        self._stop = asyncio.Event()
        self._released = asyncio.Event()  # a watched lease was released: try at once
        self._changed = asyncio.Event()  # the watch saw the record change: recompute the expiry
        self._lease: JSON | None = None  # the last lease object read or written
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0  # monotonic time the record last changed, to our knowledge
        self._renewed_at: float | None = None  # monotonic time of our last successful write
        self._answered_at: float | None = None  # monotonic time an attempt last got a verdict
        self._error: str | None = None  # why the last attempt failed, if it did
        self._logged: tuple[str, float] | None = None  # last error logged, and when
        self._status = m.LEADER_ELECTION_MASTER_STATUS.labels(config.lease_name)
        self._slowpath = m.LEADER_ELECTION_SLOWPATH.labels(config.lease_name)
        self._status.set(0)

    @property
    def is_leader(self) -> bool:
        return self.leading.is_set()

    @property
    def holder(self) -> str | None:
        """The holder identity last seen on the lease (any candidate, not only us)."""
        return None if self._observed is None else self._observed[0]

    def stop(self) -> None:
        """Ask :meth:`run` to end; it releases the lease if it holds it."""
        self._stop.set()

    def healthy(self) -> bool:
        """False when we believe we lead but have not renewed for a whole lease duration: the
        renew loop is stuck (client-go's ``HealthzAdaptor``)."""
        if not self.is_leader or self._renewed_at is None:
            return True
        return time.monotonic() - self._renewed_at <= self.config.lease_duration

    def ready(self) -> bool | str:
        """Readiness: ``True`` while leading, or while following a lease that could be read (and
        acquiring it would have been tried); otherwise the reason. A failure shorter than a
        lease duration after a good answer is a blip and keeps the process ready."""
        if self.is_leader:
            return True
        if self._error is None:
            return True if self._answered_at is not None else "the lease has not been read yet"
        answered = self._answered_at
        if answered is not None and time.monotonic() - answered <= self.config.lease_duration:
            return True
        return f"leader election failing: {self._error}"

    # ---- the campaign -------------------------------------------------------------------------

    async def run(self) -> None:
        """Acquire the lease, then keep renewing it.

        Returns after :meth:`stop` (lease released if held); raises :class:`LeaderElectionLost`
        when a held lease could not be renewed within ``renew_deadline``."""
        cfg = self.config
        watcher = asyncio.create_task(self._watch_lease(), name="lease-watch")
        try:
            while not await self._try_acquire_or_renew():
                if await self._wait_for_chance():
                    return
            watcher.cancel()
            self._became_leader()
            while not await self._sleep_or_stop(cfg.retry_period):
                if not await self._renew_within_deadline():
                    if self._stop.is_set():
                        break
                    raise LeaderElectionLost(
                        f"lease {cfg.lease_namespace}/{cfg.lease_name} not renewed within "
                        f"{cfg.renew_deadline}s"
                    )
            if self.config.release_on_stop:
                await self._release()
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            if self.is_leader:
                log.info("stopped leading", extra={"lease": cfg.lease_name})
            self.leading.clear()
            self._status.set(0)

    def _became_leader(self) -> None:
        self.leading.set()
        self._status.set(1)
        log.info(
            "became leader",
            extra={"lease": self.config.lease_name, "identity": self.config.identity},
        )

    async def _renew_within_deadline(self) -> bool:
        """Retry every ``retry_period`` until a renewal succeeds or ``renew_deadline`` passes."""
        cfg = self.config
        deadline = time.monotonic() + cfg.renew_deadline
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if await self._try_acquire_or_renew(min(cfg.request_timeout, remaining)):
                return True
            if self.holder and self.holder != cfg.identity:
                return False  # someone else holds it: no point retrying until the deadline
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if await self._sleep_or_stop(min(cfg.retry_period, remaining)):
                return False

    async def _wait_for_chance(self) -> bool:
        """Sleep until the next attempt is worth making; ``True`` if a stop was requested.

        That is a jittered retry period (client-go's poll), or sooner: at once when the watch
        shows the lease released, and the moment the holder's last renewal that we saw expires.
        A renewal seen meanwhile pushes that moment out without an attempt."""
        retry_at = time.monotonic() + self._jittered(self.config.retry_period)
        while True:
            if self._released.is_set():
                self._released.clear()
                return False
            self._changed.clear()
            at = retry_at
            expiry = self._expiry()
            now = time.monotonic()
            if expiry is not None and expiry > now:  # a past expiry was just tried: no spin
                at = min(at, expiry + _EXPIRY_MARGIN)
            if at <= now:
                return False
            if await self._sleep_or_stop(at - now, self._changed):
                return True
            if not self._changed.is_set():
                return False  # the timer rang

    def _expiry(self) -> float | None:
        """Monotonic time at which another holder's lease expires, counted from when we last saw
        its record change; ``None`` when nobody else holds it."""
        if self._observed is None:
            return None
        holder, duration = self._observed[0], self._observed[1]
        if not holder or holder == self.config.identity:
            return None
        return self._observed_at + float(duration or self.config.lease_seconds)

    async def _sleep_or_stop(self, seconds: float, wake: asyncio.Event | None = None) -> bool:
        """Sleep ``seconds`` (less if ``wake`` is set); ``True`` if a stop was requested."""
        waits = [asyncio.ensure_future(self._stop.wait())]
        if wake is not None:
            waits.append(asyncio.ensure_future(wake.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
        return self._stop.is_set()

    async def _watch_lease(self) -> None:
        """While following, watch the Lease: each renewal restarts the expiry clock when it
        arrives, and a release (graceful shutdown of the leader) is taken at once. Best effort:
        without ``list``/``watch`` on leases (or on any error) the retry timer alone does it."""
        cfg = self.config
        while True:
            try:
                listing = await self.client.list(LEASES, cfg.lease_namespace)
                rv = listing["metadata"]["resourceVersion"]
                for lease in listing.get("items") or []:
                    if lease["metadata"]["name"] == cfg.lease_name:
                        self._see(lease)
                while True:
                    async for event in self.client.watch(
                        LEASES,
                        cfg.lease_namespace,
                        resource_version=rv,
                        timeout_seconds=max(30, int(cfg.lease_duration * 4)),
                    ):
                        obj = event.get("object") or {}
                        rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                        if (obj.get("metadata") or {}).get("name") != cfg.lease_name:
                            continue
                        if event.get("type") == "DELETED":
                            self._released.set()
                        elif event.get("type") in ("ADDED", "MODIFIED"):
                            self._see(obj)
            except asyncio.CancelledError:
                raise
            except ApiError as err:
                if err.status in (401, 403, 404):  # not allowed: the retry timer alone will do
                    log.info(
                        "not watching the lease: %s",
                        err,
                        extra={"lease": cfg.lease_name},
                    )
                    return
                # 410 and transport errors: list again after a pause.
            if await self._sleep_or_stop(cfg.retry_period):
                return

    def _see(self, lease: JSON) -> None:
        """A lease as the watch delivered it: note a change of its record (its holder is alive)
        and wake the campaign to recompute the expiry, or to try at once if it was released."""
        if self._observe(lease):
            self._changed.set()
        if not (lease.get("spec") or {}).get("holderIdentity"):
            self._released.set()
            self._changed.set()

    def _jittered(self, seconds: float) -> float:
        return seconds + random.random() * self.config.jitter_factor * seconds

    # ---- one attempt --------------------------------------------------------------------------

    async def _try_acquire_or_renew(self, request_timeout: float | None = None) -> bool:
        limit = request_timeout if request_timeout is not None else self.config.request_timeout
        try:
            async with asyncio.timeout(limit):
                won = await self._attempt()
        except (ApiError, TimeoutError, LeaseUnavailable) as err:
            self._failed(err)
            return False
        self._answered_at = time.monotonic()
        self._error = None
        return won

    def _failed(self, err: BaseException) -> None:
        """Record why an attempt failed (readiness says it) and log it: a configuration problem
        at ERROR, a transient one at WARNING; the same message at most once a minute."""
        cfg = self.config
        text = str(err) or type(err).__name__
        self._error = text
        now = time.monotonic()
        last = self._logged
        if last is not None and last[0] == text and now - last[1] < _REPEAT_LOG_SECONDS:
            return
        self._logged = (text, now)
        lease = f"{cfg.lease_namespace}/{cfg.lease_name}"
        if isinstance(err, LeaseUnavailable) or (
            isinstance(err, ApiError) and err.status in (401, 403, 404)
        ):
            log.error(
                "leader election cannot use lease %s: %s", lease, text, extra={"lease": lease}
            )
        else:
            log.warning("lease %s request failed: %s", lease, text, extra={"lease": lease})

    async def _attempt(self) -> bool:
        cfg = self.config
        # Fast path: the leader writes from the record it last wrote; a conflict means someone
        # else wrote in between, and the slow path finds out who.
        if self.is_leader and self._lease is not None:
            try:
                await self._write(self._lease, renewing=True)
                return True
            except ApiError as err:
                if err.status != 409:
                    raise
            self._slowpath.inc()
        try:
            lease = await self.client.get(LEASES, cfg.lease_name, cfg.lease_namespace)
        except ApiError as err:
            if err.status != 404:
                raise
            return await self._create()
        self._observe(lease)
        holder = (lease.get("spec") or {}).get("holderIdentity") or ""
        duration = (lease.get("spec") or {}).get("leaseDurationSeconds") or cfg.lease_seconds
        mine = holder == cfg.identity
        if holder and not mine and time.monotonic() < self._observed_at + float(duration):
            return False  # held, and its holder renewed recently enough
        try:
            await self._write(lease, renewing=mine)
        except ApiError as err:
            if err.status == 409:
                return False  # another candidate won the race
            raise
        return True

    async def _create(self) -> bool:
        cfg = self.config
        now = _now_micro()
        body: JSON = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": cfg.lease_name, "namespace": cfg.lease_namespace},
            "spec": {
                "holderIdentity": cfg.identity,
                "leaseDurationSeconds": cfg.lease_seconds,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": 0,
            },
        }
        try:
            created = await self.client.create(LEASES, body, cfg.lease_namespace)
        except ApiError as err:
            if err.status == 409:
                return False
            if err.status == 404:
                raise LeaseUnavailable(
                    f"namespace {cfg.lease_namespace!r} does not exist, so the Lease cannot be "
                    f"created: create the namespace or choose another with --lease-namespace "
                    f"({err})"
                ) from err
            if err.status == 403:
                raise LeaseUnavailable(
                    f"not allowed to create the Lease (RBAC: get, create and update on "
                    f"coordination.k8s.io leases in {cfg.lease_namespace!r}): {err}"
                ) from err
            raise
        self._wrote(created)
        return True

    async def _write(self, lease: JSON, *, renewing: bool) -> None:
        cfg = self.config
        old = lease.get("spec") or {}
        now = _now_micro()
        spec: JSON = {
            "holderIdentity": cfg.identity,
            "leaseDurationSeconds": cfg.lease_seconds,
            "renewTime": now,
        }
        if renewing:
            spec["acquireTime"] = old.get("acquireTime") or now
            spec["leaseTransitions"] = old.get("leaseTransitions") or 0
        else:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = (old.get("leaseTransitions") or 0) + 1
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": cfg.lease_name,
                "namespace": cfg.lease_namespace,
                "resourceVersion": lease["metadata"]["resourceVersion"],
            },
            "spec": {**old, **spec},
        }
        written = await self.client.replace(LEASES, cfg.lease_name, body, cfg.lease_namespace)
        self._wrote(written)

    def _wrote(self, lease: JSON) -> None:
        self._lease = lease
        self._observe(lease)
        self._renewed_at = time.monotonic()

    def _observe(self, lease: JSON) -> bool:
        """Note the lease's record; ``True`` when it changed (the expiry clock restarts)."""
        record = _record(lease)
        if record == self._observed:
            return False
        self._observed = record
        self._observed_at = time.monotonic()
        return True

    async def _release(self) -> None:
        """Clear the holder so a successor need not wait out the lease; bounded, never raises."""
        cfg = self.config
        for _ in range(2):
            lease = self._lease
            if lease is None:
                return
            spec = dict(lease.get("spec") or {})
            if spec.get("holderIdentity") != cfg.identity:
                return
            now = _now_micro()
            spec.update(holderIdentity=None, leaseDurationSeconds=1, acquireTime=now, renewTime=now)
            body = {**lease, "spec": {k: v for k, v in spec.items() if v is not None}}
            try:
                async with asyncio.timeout(cfg.request_timeout):
                    try:
                        self._lease = await self.client.replace(
                            LEASES, cfg.lease_name, body, cfg.lease_namespace
                        )
                        log.info("released lease", extra={"lease": cfg.lease_name})
                        return
                    except ApiError as err:
                        if err.status != 409:
                            raise
                        self._lease = await self.client.get(
                            LEASES, cfg.lease_name, cfg.lease_namespace
                        )
            except (ApiError, TimeoutError) as err:
                log.warning("could not release lease: %s", err, extra={"lease": cfg.lease_name})
                return


__all__ = [
    "LeaderElectionConfig",
    "LeaderElectionLost",
    "LeaderElector",
    "LeaseUnavailable",
]

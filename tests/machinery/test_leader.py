"""Leader election against the real apiserver: one holder, hand-over, expiry, loss, transitions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from controller.machinery.client import LEASES, KubeClient
from controller.machinery.leader import (
    LeaderElectionConfig,
    LeaderElectionLost,
    LeaderElector,
)
from metrics import REGISTRY
from tests.eventually import async_consistently, async_eventually
from tests.faultproxy import FaultProxy

# Short timings so a test takes seconds; the ratios are client-go's (15 / 10 / 2).
LEASE, RENEW, RETRY = 3.0, 2.0, 0.4
# Bounds, not timing claims: generous multiples of the configured periods.
TAKEOVER_BOUND = LEASE + 3 * RETRY + 10.0


def _config(namespace: str, lease: str, identity: str, **kw: Any) -> LeaderElectionConfig:
    return LeaderElectionConfig(
        lease_name=lease,
        lease_namespace=namespace,
        identity=identity,
        lease_duration=kw.pop("lease_duration", LEASE),
        renew_deadline=kw.pop("renew_deadline", RENEW),
        retry_period=kw.pop("retry_period", RETRY),
        **kw,
    )


class Campaign:
    """Electors running as tasks; the test owns and cancels them."""

    def __init__(self) -> None:
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.electors: dict[str, LeaderElector] = {}

    def run(self, elector: LeaderElector) -> None:
        self.electors[elector.config.identity] = elector
        self.tasks[elector.config.identity] = asyncio.create_task(elector.run())

    def leaders(self) -> list[str]:
        return [i for i, e in self.electors.items() if e.is_leader]

    async def close(self) -> None:
        for elector in self.electors.values():
            elector.stop()
        for task in self.tasks.values():
            with contextlib.suppress(asyncio.TimeoutError, LeaderElectionLost):
                await asyncio.wait_for(task, 10)


@pytest_asyncio.fixture
async def campaign() -> AsyncIterator[Campaign]:
    c = Campaign()
    try:
        yield c
    finally:
        await c.close()


async def _lease(client: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    return (await client.get(LEASES, name, namespace))["spec"]


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="lease_duration"):
        LeaderElectionConfig("l", "ns", "me", lease_duration=10, renew_deadline=10)
    with pytest.raises(ValueError, match="renew_deadline"):
        LeaderElectionConfig("l", "ns", "me", renew_deadline=2, retry_period=2)
    with pytest.raises(ValueError, match="identity"):
        LeaderElectionConfig("l", "ns", "")
    cfg = LeaderElectionConfig("l", "ns", "me")
    assert (cfg.lease_duration, cfg.renew_deadline, cfg.retry_period) == (15.0, 10.0, 2.0)
    assert cfg.request_timeout == 5.0


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_one_leader_then_release_hands_over_at_once(
    client: KubeClient, namespace: str, campaign: Campaign
) -> None:
    lease = f"lease-{uuid.uuid4().hex[:6]}"
    for identity in ("a", "b", "c"):
        campaign.run(LeaderElector(client, _config(namespace, lease, identity)))
    await async_eventually(
        lambda: len(campaign.leaders()) == 1, timeout=TAKEOVER_BOUND, interval=0.02
    )
    first = campaign.leaders()[0]

    # Watch the three electors for a few renew periods: never two leaders, holder stays put.
    await async_consistently(
        lambda: len(campaign.leaders()) <= 1, duration=3 * RETRY, interval=0.02
    )
    spec = await _lease(client, namespace, lease)
    assert spec["holderIdentity"] == first
    assert spec["leaseTransitions"] == 0
    status = REGISTRY.get_sample_value("leader_election_master_status", {"name": lease})
    assert status == 1.0  # the gauge is shared by the three electors in this one process

    # Graceful stop releases: the holder is cleared and another candidate takes over well
    # before the lease would have expired.
    campaign.electors[first].stop()
    await asyncio.wait_for(campaign.tasks[first], RENEW + RETRY + 5)
    assert not campaign.electors[first].is_leader
    await async_eventually(
        lambda: len(campaign.leaders()) == 1, timeout=2.2 * RETRY + 5, interval=0.02
    )
    second = campaign.leaders()[0]
    assert second != first
    spec = await _lease(client, namespace, lease)
    assert spec["holderIdentity"] == second
    assert spec["leaseTransitions"] == 1


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_expired_lease_of_a_dead_holder_is_taken_over(
    client: KubeClient, namespace: str, campaign: Campaign
) -> None:
    lease = f"lease-{uuid.uuid4().hex[:6]}"
    await client.create(
        LEASES,
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": lease},
            "spec": {
                "holderIdentity": "dead-pod",
                "leaseDurationSeconds": int(LEASE),
                "renewTime": "2020-01-01T00:00:00.000000Z",
                "acquireTime": "2020-01-01T00:00:00.000000Z",
                "leaseTransitions": 4,
            },
        },
        namespace,
    )
    elector = LeaderElector(client, _config(namespace, lease, "heir"))
    campaign.run(elector)
    # The old renewTime is ignored (no clock comparison): the heir waits a whole lease duration
    # from when it first saw the record, then takes over.
    await async_consistently(lambda: not elector.is_leader, duration=LEASE / 2, interval=0.02)
    await async_eventually(lambda: elector.is_leader, timeout=TAKEOVER_BOUND, interval=0.02)
    spec = await _lease(client, namespace, lease)
    assert spec["holderIdentity"] == "heir"
    assert spec["leaseTransitions"] == 5


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_lease_taken_by_another_writer_means_lost_at_once(
    client: KubeClient, namespace: str, kubectl: Callable[..., Any]
) -> None:
    lease = f"lease-{uuid.uuid4().hex[:6]}"
    elector = LeaderElector(client, _config(namespace, lease, "victim"))
    task = asyncio.create_task(elector.run())
    try:
        await async_eventually(lambda: elector.is_leader, timeout=TAKEOVER_BOUND, interval=0.02)
        # Someone else overwrites the lease (what a partitioned leader finds when it comes back).
        patch = {"spec": {"holderIdentity": "usurper", "leaseDurationSeconds": 3600}}
        kubectl(
            "patch", "lease", lease, "--type=merge", "-p", json.dumps(patch), namespace=namespace
        )
        with pytest.raises(LeaderElectionLost):
            await asyncio.wait_for(task, RENEW + 2 * RETRY + 5)
        assert not elector.is_leader
        assert elector.holder == "usurper"
        spec = await _lease(client, namespace, lease)
        assert spec["holderIdentity"] == "usurper"  # a lost leader releases nothing
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.mark.cluster
@pytest.mark.asyncio
async def test_partitioned_leader_steps_down_before_anyone_takes_over(
    client: KubeClient, namespace: str, fault_proxy: FaultProxy, campaign: Campaign
) -> None:
    lease = f"lease-{uuid.uuid4().hex[:6]}"
    cut_off = await KubeClient.connect(fault_proxy.kubeconfig)
    try:
        first = LeaderElector(cut_off, _config(namespace, lease, "behind-proxy"))
        campaign.run(first)
        await async_eventually(lambda: first.is_leader, timeout=TAKEOVER_BOUND, interval=0.02)
        second = LeaderElector(client, _config(namespace, lease, "direct"))
        campaign.run(second)

        # The proxy now answers every lease request of the leader with 503: it cannot renew.
        for method in ("GET", "PUT", "POST"):
            fault_proxy.fail_next(method, r"/leases", 503, times=10_000)
        both = 0

        def second_leads() -> bool:
            nonlocal both
            both += first.is_leader and second.is_leader
            return second.is_leader

        await async_eventually(second_leads, timeout=RENEW + LEASE + TAKEOVER_BOUND, interval=0.005)
        assert both == 0  # never two leaders, at any sample
        with pytest.raises(LeaderElectionLost):
            await asyncio.wait_for(campaign.tasks["behind-proxy"], 5)
        spec = await _lease(client, namespace, lease)
        assert spec["holderIdentity"] == "direct"
        assert spec["leaseTransitions"] == 1
    finally:
        await campaign.close()
        await cut_off.close()

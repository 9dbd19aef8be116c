"""Never two controllers on one DGDR: the Dynamo operator's own DGDR controller.

A cluster running the Dynamo platform runs the Dynamo operator, whose DGDR controller reconciles
the same objects as this one. Its manager is leader-elected through a Lease (upstream's Helm
chart: ``dynamo.nvidia.com`` in ``kube-system``, or in the watched namespace when the operator is
namespace-restricted). While that Lease is held and renewed, this controller does not start its
controllers (a gate of the manager, see ``controller/machinery/manager.py``), saying why, unless
the admin says otherwise (``--allow-dynamo-operator``, for an operator whose DGDR controller is
turned off). Conversion keeps being served meanwhile. How to switch a cluster from one to the
other: ``deploy/README.md``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from controller.machinery.client import LEASES, ApiError, KubeClient

log = logging.getLogger(__name__)

DEFAULT_LEASE = "kube-system/dynamo.nvidia.com"


def parse_lease_ref(text: str) -> tuple[str, str]:
    """``namespace/name`` → (namespace, name); ValueError naming what is wrong."""
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise ValueError(f"must be namespace/name, got {text!r}")
    return namespace, name


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def live_holder(lease: dict[str, object], now: datetime | None = None) -> str | None:
    """The holder of a Lease renewed within its duration, else None (released or expired)."""
    spec = lease.get("spec")
    if not isinstance(spec, dict):
        return None
    holder = spec.get("holderIdentity")
    renewed = _time(spec.get("renewTime"))
    duration = spec.get("leaseDurationSeconds")
    if not holder or renewed is None or not isinstance(duration, int):
        return None
    age = ((now or datetime.now(UTC)) - renewed).total_seconds()
    return str(holder) if age <= duration else None


class DynamoOperatorGate:
    """A manager gate: the reason this controller must not act, or None."""

    def __init__(self, client: KubeClient, lease: str = DEFAULT_LEASE) -> None:
        self._client = client
        self._namespace, self._name = parse_lease_ref(lease)
        self._cannot_read = False

    async def __call__(self) -> str | None:
        try:
            lease = await self._client.get(LEASES, self._name, self._namespace)
        except ApiError as e:
            if e.status == 404:
                return None
            if e.status == 403:
                if not self._cannot_read:  # say it once: RBAC will not change by itself
                    log.warning(
                        "cannot read Lease %s/%s to tell whether the Dynamo operator reconciles "
                        "DGDRs too (%s); acting as if it does not",
                        self._namespace,
                        self._name,
                        e.message,
                    )
                    self._cannot_read = True
                return None
            raise
        holder = live_holder(lease)
        if holder is None:
            return None
        return (
            f"the Dynamo operator ({holder!r}, Lease {self._namespace}/{self._name}) is running "
            "and reconciles DynamoGraphDeploymentRequests too; this controller will not act on "
            "them while it runs. Stop the Dynamo operator's DGDR controller (deploy/README.md, "
            "'Next to a Dynamo platform'), or start this one with --allow-dynamo-operator if "
            "that operator's DGDR controller is turned off"
        )

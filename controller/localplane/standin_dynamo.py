"""LOCAL STAND-IN for the Dynamo operator: marks DynamoGraphDeployments ``successful``.

On a real cluster the Dynamo platform's operator runs the DGD's pods and reports
``status.state``. The local control plane has no kubelet and no Dynamo operator, so the demo uses
this stand-in to play that part: after ``delay`` seconds it writes ``state: successful`` and the
replica counts the DGD asks for. It is never part of the controller and never deployed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from controller.dgdr.api import DGD_RESOURCE
from controller.machinery.client import ApiError, KubeClient

log = logging.getLogger(__name__)


def ready_status(dgd: dict[str, Any]) -> dict[str, Any]:
    services = (dgd.get("spec") or {}).get("services") or {}
    return {
        "state": "successful",
        "services": {
            name: {
                "replicas": int(s.get("replicas") or 1),
                "availableReplicas": int(s.get("replicas") or 1),
            }
            for name, s in services.items()
            if isinstance(s, dict)
        },
    }


async def run_standin(
    client: KubeClient, namespace: str | None, *, delay: float = 2.0, poll: float = 0.5
) -> None:
    """Until cancelled: every DGD seen for ``delay`` seconds without a state becomes successful."""
    first_seen: dict[str, float] = {}
    while True:
        try:
            listing = await client.list(DGD_RESOURCE, namespace)
        except ApiError as e:
            log.warning("list failed: %s", e)
            await asyncio.sleep(poll)
            continue
        now = time.monotonic()
        for dgd in listing.get("items") or []:
            meta = dgd["metadata"]
            key = f"{meta['namespace']}/{meta['name']}"
            if (dgd.get("status") or {}).get("state"):
                continue
            seen = first_seen.setdefault(key, now)
            if now - seen < delay:
                continue
            body = {
                "apiVersion": dgd["apiVersion"],
                "kind": dgd["kind"],
                "metadata": {
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "resourceVersion": meta["resourceVersion"],
                },
                "spec": dgd.get("spec") or {},
                "status": ready_status(dgd),
            }
            try:
                await client.replace(
                    DGD_RESOURCE, meta["name"], body, meta["namespace"], subresource="status"
                )
                log.info("DGD %s is now successful", key)
            except ApiError as e:
                log.warning("status write for %s failed: %s", key, e)
        await asyncio.sleep(poll)


def main(argv: list[str] | None = None) -> int:
    """``python -m controller.localplane.standin_dynamo --kubeconfig F [--namespace N]``."""
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--namespace")
    ap.add_argument("--delay", type=float, default=2.0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="stand-in Dynamo operator: %(message)s")

    async def go() -> None:
        client = await KubeClient.connect(args.kubeconfig)
        try:
            await run_standin(client, args.namespace, delay=args.delay)
        finally:
            await client.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(go())
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())

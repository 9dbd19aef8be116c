"""A tiny generic controller built on the Manager, run as a separate process by the tests.

It watches ConfigMaps labelled ``stamp=yes`` and stamps each with the value of its ``data.v``
(annotation ``stamp.test/seen``) and its own identity (``stamp.test/by``), writing with its
identity as field manager and user agent so the apiserver's audit log and ``managedFields`` say
which process wrote what. Every reconcile is appended to a JSON-lines record file, with a flag
when the key was already being reconciled in this process (an overlap the workqueue forbids).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from controller.machinery.client import CONFIGMAPS, ClientOptions, KubeClient
from controller.machinery.informer import InformerConfig
from controller.machinery.logging_setup import configure_logging
from controller.machinery.manager import Manager, ManagerConfig
from controller.machinery.workers import Result

SEEN = "stamp.test/seen"
BY = "stamp.test/by"
LABEL = "stamp=yes"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--identity", required=True)
    p.add_argument("--record", required=True, type=Path)
    p.add_argument("--lease-name", default="stamp-leader")
    p.add_argument("--lease", type=float, default=3.0)
    p.add_argument("--renew", type=float, default=2.0)
    p.add_argument("--retry", type=float, default=0.4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--work-delay", type=float, default=0.0)
    p.add_argument("--health-port", type=int, default=0)
    p.add_argument("--shutdown-timeout", type=float, default=10.0)
    p.add_argument("--no-leader-election", action="store_true")
    return p.parse_args(argv)


class Recorder:
    def __init__(self, out: TextIO, identity: str) -> None:
        self.out = out
        self.identity = identity
        self.in_flight: set[str] = set()

    def write(self, event: str, key: str, **extra: Any) -> None:
        line = {"event": event, "key": key, "id": self.identity, "t": time.time(), **extra}
        self.out.write(json.dumps(line) + "\n")
        self.out.flush()


async def main(args: argparse.Namespace) -> int:
    configure_logging("INFO")
    client = await KubeClient.connect(
        args.kubeconfig, options=ClientOptions(user_agent=f"stamp/{args.identity}")
    )
    manager = Manager(
        client,
        ManagerConfig(
            namespaces=(args.namespace,),
            leader_election=not args.no_leader_election,
            lease_name=args.lease_name,
            lease_namespace=args.namespace,
            lease_duration=args.lease,
            renew_deadline=args.renew,
            retry_period=args.retry,
            identity=args.identity,
            health_host="127.0.0.1",
            health_port=args.health_port,
            informer=InformerConfig(watch_timeout=30, watchdog_timeout=20),
            shutdown_timeout=args.shutdown_timeout,
            retry_base_delay=0.05,
            retry_max_delay=2.0,
        ),
    )
    informer = manager.informer(CONFIGMAPS, label_selector=LABEL)
    with args.record.open("a", encoding="utf-8") as out:
        rec = Recorder(out, args.identity)

        async def reconcile(key: str) -> Result:
            overlap = key in rec.in_flight
            rec.write("start", key, overlap=overlap)
            rec.in_flight.add(key)
            try:
                if args.work_delay:
                    await asyncio.sleep(args.work_delay)
                obj = informer.store.get(key)
                if obj is None:
                    return Result()
                want = str((obj.get("data") or {}).get("v", ""))
                annotations = obj["metadata"].get("annotations") or {}
                if annotations.get(SEEN) == want and annotations.get(BY):
                    return Result()
                namespace, name = key.split("/", 1)
                patch = {"metadata": {"annotations": {SEEN: want, BY: args.identity}}}
                await client.patch(
                    CONFIGMAPS, name, patch, namespace, field_manager=f"stamp-{args.identity}"
                )
                rec.write("write", key, value=want)
                return Result()
            finally:
                rec.in_flight.discard(key)
                rec.write("end", key)

        controller = manager.add_controller("stamp", reconcile, workers=args.workers)
        controller.watch(informer)
        return await manager.run()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse(sys.argv[1:]))))

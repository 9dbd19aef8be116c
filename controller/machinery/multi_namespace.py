"""One informer per watched namespace, presented as one informer.

A controller restricted to a few namespaces cannot watch cluster-wide (its RBAC forbids it), so
each namespace gets its own list and watch; the controller sees one store and one handler list.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable, Sequence
from typing import Any

from controller.machinery.informer import Informer

JSON = dict[str, Any]
Handler = Callable[[str, JSON, JSON | None], None]


class MultiStore:
    """Read-only view over the per-namespace stores; keys are ``namespace/name``."""

    def __init__(self, informers: Sequence[Informer]) -> None:
        self._by_namespace = {i.namespace: i.store for i in informers}

    def get(self, key: str) -> JSON | None:
        store = self._by_namespace.get(key.partition("/")[0])
        return store.get(key) if store is not None else None

    def list(self) -> builtins.list[JSON]:
        return [obj for store in self._by_namespace.values() for obj in store.list()]

    def by_label(self, key: str, value: str) -> builtins.list[JSON]:
        return [o for store in self._by_namespace.values() for o in store.by_label(key, value)]

    def keys(self) -> builtins.list[str]:
        return [k for store in self._by_namespace.values() for k in store]

    def resource_version(self, key: str) -> str | None:
        store = self._by_namespace.get(key.partition("/")[0])
        return store.resource_version(key) if store is not None else None

    def encoded_size(self) -> int:
        return sum(store.encoded_size() for store in self._by_namespace.values())

    def __len__(self) -> int:
        return sum(len(store) for store in self._by_namespace.values())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None


class MultiNamespaceInformer:
    """The :class:`Informer` interface over several namespaced informers of one resource."""

    def __init__(self, informers: Sequence[Informer]) -> None:
        if not informers:
            raise ValueError("MultiNamespaceInformer needs at least one informer")
        self.informers = list(informers)
        self.resource = informers[0].resource
        self.transform = informers[0].transform
        self.name = f"{informers[0].name}[{','.join(str(i.namespace) for i in informers)}]"
        self.store = MultiStore(self.informers)
        self.synced = asyncio.Event()

    def add_handler(self, fn: Handler) -> None:
        for informer in self.informers:
            informer.add_handler(fn)

    def healthy(self) -> bool:
        return all(i.healthy() for i in self.informers)

    async def run(self) -> None:
        async def mark_synced() -> None:
            await asyncio.gather(*(i.synced.wait() for i in self.informers))
            self.synced.set()

        async with asyncio.TaskGroup() as group:
            group.create_task(mark_synced())
            for informer in self.informers:
                group.create_task(informer.run())


__all__ = ["MultiNamespaceInformer", "MultiStore"]

"""The informer's local cache: objects by ``namespace/name``, with an index by label.

Single-threaded by design: every mutation happens on the event loop, from the informer that owns
the store, so no lock is needed. Readers get deep copies, because in Python a cached dict handed
out is a cached dict mutated by accident sooner or later (client-go's shared-cache warning, in
capitals in sample-controller); handlers that receive the cached instance must treat it as
read-only.
"""

from __future__ import annotations

import builtins
import copy
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from controller.machinery.client import key_of

JSON = dict[str, Any]
Transform = Callable[[JSON], JSON]


def strip_managed_fields(obj: JSON) -> JSON:
    """Drop what no controller reads but every object carries (often half its size)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
        annotations = meta.get("annotations")
        if isinstance(annotations, dict):
            annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    return obj


def resource_version(obj: JSON | None) -> str | None:
    """An object's resourceVersion: an opaque string, compared only for equality."""
    if obj is None:
        return None
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    return str(rv) if rv is not None else None


def _labels(obj: JSON) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


class Store:
    """Objects by key plus a ``(label key, label value) -> keys`` index kept in step."""

    def __init__(self, transform: Transform | None = None) -> None:
        self._objects: dict[str, JSON] = {}
        self._by_label: dict[tuple[str, str], set[str]] = {}
        self._transform = transform

    # -- reads (copies) ---------------------------------------------------------------------------

    def get(self, key: str) -> JSON | None:
        obj = self._objects.get(key)
        return copy.deepcopy(obj) if obj is not None else None

    def list(self) -> builtins.list[JSON]:
        return [copy.deepcopy(o) for o in self._objects.values()]

    def by_label(self, key: str, value: str) -> builtins.list[JSON]:
        keys = self._by_label.get((key, value), ())
        return [copy.deepcopy(self._objects[k]) for k in sorted(keys)]

    def keys(self) -> builtins.list[str]:
        return list(self._objects)

    def __len__(self) -> int:
        return len(self._objects)

    def __contains__(self, key: object) -> bool:
        return key in self._objects

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._objects))

    # -- writes (by the owning informer) -----------------------------------------------------------

    def upsert(self, obj: JSON) -> tuple[JSON, JSON | None]:
        """Store ``obj``; return (the stored instance, the previous one or None)."""
        if self._transform is not None:
            obj = self._transform(obj)
        key = key_of(obj)
        old = self._objects.get(key)
        if old is not None:
            self._unindex(key, old)
        self._objects[key] = obj
        self._index(key, obj)
        return obj, old

    def remove(self, key: str) -> JSON | None:
        old = self._objects.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def cached(self, key: str) -> JSON | None:
        """The stored instance itself, no copy: for the informer's own bookkeeping."""
        return self._objects.get(key)

    def replace(self, objs: Iterable[JSON]) -> builtins.list[tuple[str, JSON, JSON | None]]:
        """Swap in a fresh list; return the (type, obj, old) events that turn old into new.

        An object whose resourceVersion did not change yields nothing; one that is gone yields
        DELETED carrying its last known state (client-go's DeletedFinalStateUnknown).
        """
        fresh: dict[str, JSON] = {}
        for obj in objs:
            if self._transform is not None:
                obj = self._transform(obj)
            fresh[key_of(obj)] = obj
        events: builtins.list[tuple[str, JSON, JSON | None]] = []
        for key, obj in fresh.items():
            old = self._objects.get(key)
            if old is None:
                events.append(("ADDED", obj, None))
            elif resource_version(old) != resource_version(obj):
                events.append(("MODIFIED", obj, old))
        events += [("DELETED", old, old) for key, old in self._objects.items() if key not in fresh]
        self._objects = fresh
        self._by_label = {}
        for key, obj in fresh.items():
            self._index(key, obj)
        return events

    def _index(self, key: str, obj: JSON) -> None:
        for item in _labels(obj).items():
            self._by_label.setdefault(item, set()).add(key)

    def _unindex(self, key: str, obj: JSON) -> None:
        for item in _labels(obj).items():
            keys = self._by_label.get(item)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_label[item]


__all__ = ["Store", "Transform", "resource_version", "strip_managed_fields"]

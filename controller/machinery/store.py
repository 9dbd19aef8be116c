"""The informer's local cache: objects by ``namespace/name``, with an index by label.

Single-threaded by design: every mutation happens on the event loop, from the informer that owns
the store, so no lock is needed.

Objects are kept as compact JSON (bytes), not as Python dicts: a parsed Kubernetes object costs
five to ten times its JSON size in dicts and strings, and a controller reads each cached object
rarely (once per reconcile) but holds all of them all the time. Every read decodes a fresh copy,
which is as cheap as the deep copy a dict cache must hand out anyway (in Python a cached dict
handed out is a cached dict mutated by accident sooner or later: client-go's shared-cache
warning, in capitals in sample-controller). Handlers get the object of the event itself, which
is theirs to keep.

Before it is stored an object goes through the store's transform (controller-runtime's cache
``TransformFunc``): by default :func:`strip_managed_fields`; an owner can add its own, e.g. to
drop fields it never reads. Whatever a transform removes is invisible to every reader of the
cache, so it must never remove what a reconcile reads or writes back.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from controller.machinery.client import key_of

JSON = dict[str, Any]
Transform = Callable[[JSON], JSON]

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)


def _encode(obj: JSON) -> bytes:
    return _encoder.encode(obj).encode()


def _decode(blob: bytes) -> JSON:
    obj: JSON = json.loads(blob)
    return obj


def chain(*transforms: Transform | None) -> Transform | None:
    """One transform that applies each given one in turn (``None``s skipped)."""
    steps = [t for t in transforms if t is not None]
    if not steps:
        return None
    if len(steps) == 1:
        return steps[0]

    def chained(obj: JSON) -> JSON:
        for step in steps:
            obj = step(obj)
        return obj

    return chained


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


class Entry:
    """One object as the store keeps it: encoded, with what the store consults without
    decoding (key, resourceVersion, labels). Made by :meth:`Store.prepare`."""

    __slots__ = ("blob", "key", "labels", "rv")

    def __init__(self, obj: JSON) -> None:
        self.key = key_of(obj)
        self.blob = _encode(obj)
        self.rv = resource_version(obj)
        self.labels = tuple(_labels(obj).items())

    def decode(self) -> JSON:
        return _decode(self.blob)


class Change:
    """What a relist found for one key: ADDED, MODIFIED or DELETED; the objects are decoded
    only when asked for, so a relist of thousands of objects never holds them all parsed."""

    __slots__ = ("new", "old", "type")

    def __init__(self, type_: str, new: Entry | None, old: Entry | None) -> None:
        self.type = type_
        self.new = new
        self.old = old

    def objects(self) -> tuple[JSON, JSON | None]:
        """(the object, its previous state); a DELETED carries its last known state twice."""
        if self.new is None:
            assert self.old is not None
            last = self.old.decode()
            return last, last
        return self.new.decode(), self.old.decode() if self.old is not None else None


class Store:
    """Objects by key (encoded) plus a ``(label key, label value) -> keys`` index in step."""

    def __init__(self, transform: Transform | None = None) -> None:
        self._objects: dict[str, Entry] = {}
        self._by_label: dict[tuple[str, str], set[str]] = {}
        self._transform = transform

    # -- reads (fresh copies) ---------------------------------------------------------------------

    def get(self, key: str) -> JSON | None:
        entry = self._objects.get(key)
        return _decode(entry.blob) if entry is not None else None

    def list(self) -> builtins.list[JSON]:
        return [_decode(e.blob) for e in self._objects.values()]

    def by_label(self, key: str, value: str) -> builtins.list[JSON]:
        keys = self._by_label.get((key, value), ())
        return [_decode(self._objects[k].blob) for k in sorted(keys)]

    def keys(self) -> builtins.list[str]:
        return list(self._objects)

    def resource_version(self, key: str) -> str | None:
        """The cached object's resourceVersion, without decoding it."""
        entry = self._objects.get(key)
        return entry.rv if entry is not None else None

    def encoded_size(self) -> int:
        """Bytes the cached objects take in their encoded form (for benchmarks)."""
        return sum(len(e.blob) for e in self._objects.values())

    def __len__(self) -> int:
        return len(self._objects)

    def __contains__(self, key: object) -> bool:
        return key in self._objects

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._objects))

    # -- writes (by the owning informer) -----------------------------------------------------------

    def transform(self, obj: JSON) -> JSON:
        """``obj`` as the store keeps it (the transform applied; ``obj`` may be changed)."""
        return self._transform(obj) if self._transform is not None else obj

    def prepare(self, obj: JSON) -> Entry:
        """``obj`` transformed and encoded, ready for :meth:`replace_entries` (``obj`` itself
        may be changed by the transform and can be dropped)."""
        return Entry(self.transform(obj))

    def upsert(self, obj: JSON) -> tuple[JSON, JSON | None]:
        """Store ``obj`` (transformed); return (it, the previous object or None)."""
        obj = self.transform(obj)
        entry = Entry(obj)
        key = entry.key
        old_entry = self._objects.get(key)
        old = None
        if old_entry is not None:
            old = _decode(old_entry.blob)
            self._unindex(key, old_entry)
        self._objects[key] = entry
        self._index(key, entry)
        return obj, old

    def remove(self, key: str) -> JSON | None:
        entry = self._objects.pop(key, None)
        if entry is None:
            return None
        self._unindex(key, entry)
        return _decode(entry.blob)

    def cached(self, key: str) -> JSON | None:
        """The cached object (a decoded copy, like :meth:`get`)."""
        return self.get(key)

    def replace(self, objs: Iterable[JSON]) -> builtins.list[tuple[str, JSON, JSON | None]]:
        """Swap in a fresh list; return the (type, obj, old) events that turn old into new
        (see :meth:`replace_entries`, which this decodes in full)."""
        changes = self.replace_entries(self.prepare(obj) for obj in objs)
        return [(c.type, *c.objects()) for c in changes]

    def replace_entries(self, entries: Iterable[Entry]) -> builtins.list[Change]:
        """Swap in a fresh list of prepared entries; return the changes from the old content.

        An object whose resourceVersion did not change yields nothing; one that is gone yields
        DELETED carrying its last known state (client-go's DeletedFinalStateUnknown).
        """
        fresh: dict[str, Entry] = {}
        changes: builtins.list[Change] = []
        for entry in entries:
            fresh[entry.key] = entry
            old = self._objects.get(entry.key)
            if old is None:
                changes.append(Change("ADDED", entry, None))
            elif old.rv != entry.rv:
                changes.append(Change("MODIFIED", entry, old))
        for key, old in self._objects.items():
            if key not in fresh:
                changes.append(Change("DELETED", None, old))
        self._objects = fresh
        self._by_label = {}
        for key, entry in fresh.items():
            self._index(key, entry)
        return changes

    def _index(self, key: str, entry: Entry) -> None:
        for item in entry.labels:
            self._by_label.setdefault(item, set()).add(key)

    def _unindex(self, key: str, entry: Entry) -> None:
        for item in entry.labels:
            keys = self._by_label.get(item)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_label[item]


__all__ = [
    "Change",
    "Entry",
    "Store",
    "Transform",
    "chain",
    "resource_version",
    "strip_managed_fields",
]

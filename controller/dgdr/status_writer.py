"""The one place that writes a DGDR: status through ``/status``, metadata through a patch.

Both writes carry the resourceVersion the decision was made on, so a write based on a stale read
fails with 409 instead of overwriting someone else's change; the reconciler then re-reads and
decides again. Writes that would change nothing are skipped, which keeps API writes per DGDR low.
Every status write also updates the per-object metrics, so what Prometheus shows is what was
written.

It also remembers, per object, the newest resourceVersion it knows the server holds (the one its
own last write returned, or a fresh read). A cached copy with another version may be older than
our own last write: ``current`` then reads the object from the API server, so no decision (start a
profile, create a DGD, record an Event) is ever taken on a state we have already replaced.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from controller.dgdr.conditions import same_status
from controller.machinery.client import ApiError, KubeClient, Resource
from metrics import dgdr as dgdr_metrics

JSON = dict[str, Any]
log = logging.getLogger(__name__)


class StatusWriter:
    def __init__(self, client: KubeClient, resource: Resource) -> None:
        self._client = client
        self._res = resource
        self._known: dict[str, str] = {}

    async def current(self, key: str, cached: JSON) -> JSON | None:
        """``cached``, or the server's copy when the cache may lag our own writes (None: gone)."""
        known = self._known.get(key)
        if known is None or cached["metadata"].get("resourceVersion") == known:
            return cached
        ns, name = key.split("/", 1)
        try:
            fresh = await self._client.get(self._res, name, ns)
        except ApiError as e:
            if e.status == 404:
                self.forget(key)
                return None
            raise
        self._remember(fresh)
        return fresh

    def forget(self, key: str) -> None:
        self._known.pop(key, None)

    def _remember(self, obj: JSON) -> JSON:
        meta = obj["metadata"]
        self._known[f"{meta['namespace']}/{meta['name']}"] = str(meta["resourceVersion"])
        return obj

    async def status(self, obj: JSON, new_status: JSON) -> JSON:
        """Replace the status if it differs; returns the object as the server now has it."""
        if same_status(obj.get("status") or {}, new_status):
            return obj
        meta = obj["metadata"]
        body = {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "resourceVersion": meta["resourceVersion"],
            },
            "spec": obj.get("spec") or {},
            "status": new_status,
        }
        updated = await self._client.replace(
            self._res, meta["name"], body, meta["namespace"], subresource="status"
        )
        self.observe(updated)
        _log_transition(f"{meta['namespace']}/{meta['name']}", obj.get("status") or {}, new_status)
        return self._remember(updated)

    async def metadata(
        self,
        obj: JSON,
        *,
        annotations: dict[str, str | None] | None = None,
        finalizers: list[str] | None = None,
    ) -> JSON:
        """Merge-patch annotations (None deletes one) and/or replace the finalizer list."""
        meta = obj["metadata"]
        patch_meta: JSON = {"resourceVersion": meta["resourceVersion"]}
        if annotations:
            current = meta.get("annotations") or {}
            changed = {k: v for k, v in annotations.items() if current.get(k) != v}
            if changed:
                patch_meta["annotations"] = changed
        if finalizers is not None and finalizers != (meta.get("finalizers") or []):
            patch_meta["finalizers"] = finalizers
        if len(patch_meta) == 1:
            return obj
        return self._remember(
            await self._client.patch(
                self._res, meta["name"], {"metadata": patch_meta}, meta["namespace"]
            )
        )

    @staticmethod
    def observe(obj: JSON) -> None:
        meta, status = obj["metadata"], obj.get("status") or {}
        dgdr_metrics.observe_phase(
            meta["namespace"],
            meta["name"],
            status.get("phase") or "Pending",
            status.get("profilingPhase"),
        )
        dgdr_metrics.observe_conditions(
            meta["namespace"], meta["name"], copy.deepcopy(status.get("conditions") or [])
        )


def _log_transition(key: str, old: JSON, new: JSON) -> None:
    """One INFO line per phase (or profiling sub-phase) transition written, and per failure,
    naming the key; the JSON formatter adds the reconcile id the worker set."""
    before = (old.get("phase") or "Pending", old.get("profilingPhase"))
    after = (new.get("phase") or "Pending", new.get("profilingPhase"))
    if before == after:
        return
    succeeded: JSON = next(
        (c for c in new.get("conditions") or [] if c.get("type") == "Succeeded"), {}
    )
    if after[0] == "Failed" and before[0] != "Failed":
        log.info(
            "dgdr %s failed (%s -> Failed): %s: %s",
            key,
            before[0],
            succeeded.get("reason"),
            succeeded.get("message"),
            extra={"phase": "Failed", "fromPhase": before[0], "reason": succeeded.get("reason")},
        )
        return
    log.info(
        "dgdr %s: %s%s -> %s%s (%s)",
        key,
        before[0],
        f"/{before[1]}" if before[1] else "",
        after[0],
        f"/{after[1]}" if after[1] else "",
        succeeded.get("reason"),
        extra={"phase": after[0], "fromPhase": before[0], "reason": succeeded.get("reason")},
    )

"""Storage-version migration of a custom resource: what kube-storage-version-migrator does.

A CRD whose ``status.storedVersions`` lists a version cannot drop that version from
``spec.versions``: objects may still sit in etcd in it. The way out is to rewrite every object
once (a no-op update: the API server re-encodes it in the current storage version, converting
through the CRD's conversion webhook), then set ``status.storedVersions`` to the storage version
alone. Rewriting is safe at any time (a 409 means someone else wrote it, and so re-encoded it; a
404 that it is gone) and is repeated until no list page is left, so it can be re-run after an
interruption.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from controller.machinery.client import CRDS, ApiError, KubeClient, Resource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MigrationResult:
    rewritten: int
    gone: int  # deleted or written by someone else meanwhile (re-encoded either way)
    stored_before: tuple[str, ...]
    stored_after: tuple[str, ...]


def storage_version(crd: dict[str, Any]) -> str:
    for v in (crd.get("spec") or {}).get("versions") or []:
        if isinstance(v, dict) and v.get("storage"):
            return str(v["name"])
    raise ValueError(f"CRD {crd.get('metadata')}: no storage version in spec.versions")


async def migrate(
    client: KubeClient, crd_name: str, resource: Resource, *, page: int = 500
) -> MigrationResult:
    """Rewrite every object of ``resource`` (read in its storage version) and leave the CRD's
    ``status.storedVersions`` as that version alone."""
    crd = await client.get(CRDS, crd_name)
    target = storage_version(crd)
    if resource.version != target:
        raise ValueError(
            f"resource {resource.plural}.{resource.group}/{resource.version}: read it in the "
            f"storage version {target}"
        )
    before = tuple((crd.get("status") or {}).get("storedVersions") or ())
    rewritten = gone = 0
    token: str | None = None
    while True:
        listing = await client.list(resource, limit=page, continue_=token)
        for obj in listing.get("items") or []:
            meta = obj["metadata"]
            try:
                await client.replace(resource, meta["name"], obj, meta.get("namespace"))
                rewritten += 1
            except ApiError as e:
                if e.status not in (404, 409):
                    raise
                gone += 1
        token = (listing.get("metadata") or {}).get("continue") or None
        if token is None:
            break
    if before != (target,):
        await client.patch(
            CRDS,
            crd_name,
            {"status": {"storedVersions": [target]}},
            subresource="status",
        )
    log.info(
        "storage version migration of %s: %d rewritten, %d gone or written meanwhile; "
        "storedVersions %s -> [%s]",
        crd_name,
        rewritten,
        gone,
        list(before),
        target,
    )
    return MigrationResult(rewritten, gone, before, (target,))


__all__ = ["MigrationResult", "migrate", "storage_version"]

"""The pods of the DGDs the controller created: where image pulls fail (``ImagePullFailed``).

The Dynamo operator labels every pod of a DGD ``nvidia.com/dynamo-graph-deployment-name=<dgd>``.
Upstream's controller lists those pods while a DGD is not ready and records a Warning event on
the DGDR for each container stuck in ``ErrImagePull`` or ``ImagePullBackOff``. Here a pod
informer per namespace (started the first time a DGDR of that namespace follows a DGD, selected
on that label, so only Dynamo's pods are cached) wakes the DGDR when one of its DGD's pods fails
to pull, and the reconciler records each failing pod, container and image once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from controller.dgdr import api

JSON = dict[str, Any]
PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff")


@dataclass(frozen=True)
class PullFailure:
    pod: str
    uid: str
    container: str
    image: str
    reason: str
    message: str

    def describe(self) -> str:
        """Upstream's wording: ``pod P container C: ErrImagePull: <kubelet's message>``."""
        text = f"pod {self.pod} container {self.container}: {self.reason}"
        if self.image:
            text += f" ({self.image})"
        return f"{text}: {self.message}" if self.message else text


def pull_failures(pod: JSON) -> list[PullFailure]:
    """Containers (init containers included) of ``pod`` waiting on an image they cannot pull."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    out = []
    init = status.get("initContainerStatuses") or []
    statuses = [*init, *(status.get("containerStatuses") or [])]
    for cs in statuses:
        waiting = ((cs or {}).get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in PULL_FAILURES:
            out.append(
                PullFailure(
                    pod=str(meta.get("name", "?")),
                    uid=str(meta.get("uid", "")),
                    container=str(cs.get("name", "?")),
                    image=str(cs.get("image", "")),
                    reason=str(waiting["reason"]),
                    message=str(waiting.get("message") or ""),
                )
            )
    return out


class Informers(Protocol):
    """What the pod watch needs from the manager: a shared informer per namespace."""

    def informer(
        self, resource: Any, *, namespace: str | None = None, label_selector: str | None = None
    ) -> Any: ...


class ReadStore(Protocol):
    def get(self, key: str) -> JSON | None: ...


class PodWatch:
    """Pod informers, one per namespace that has a followed DGD; never more than that."""

    def __init__(
        self,
        informers: Informers,
        dgds: ReadStore,
        watch: Callable[[Any, Callable[[JSON], Iterable[str]]], None],
    ) -> None:
        """``watch(informer, to_keys)`` connects an informer to the DGDR controller's queue."""
        self._informers = informers
        self._dgds = dgds
        self._watch = watch
        self._by_namespace: dict[str, Any] = {}

    def ensure(self, namespace: str) -> None:
        """Start watching the DGD pods of ``namespace`` (once; later calls do nothing)."""
        if namespace in self._by_namespace:
            return
        informer = self._informers.informer(
            api.PODS, namespace=namespace, label_selector=api.LABEL_DGD_POD
        )
        self._by_namespace[namespace] = informer
        self._watch(informer, self.dgdr_keys)

    def pods_of(self, namespace: str, dgd: str) -> list[JSON]:
        informer = self._by_namespace.get(namespace)
        if informer is None:
            return []
        pods: list[JSON] = informer.store.by_label(api.LABEL_DGD_POD, dgd)
        return pods

    def dgdr_keys(self, pod: JSON) -> list[str]:
        """The DGDR of the DGD this pod belongs to, when the pod cannot pull an image."""
        if not pull_failures(pod):
            return []
        meta = pod.get("metadata") or {}
        dgd_name = (meta.get("labels") or {}).get(api.LABEL_DGD_POD)
        dgd = self._dgds.get(f"{meta.get('namespace')}/{dgd_name}") if dgd_name else None
        labels = ((dgd or {}).get("metadata") or {}).get("labels") or {}
        name, namespace = labels.get(api.LABEL_DGDR_NAME), labels.get(api.LABEL_DGDR_NAMESPACE)
        return [f"{namespace}/{name}"] if name and namespace else []

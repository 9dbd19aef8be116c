"""GPU hardware discovery from node labels (GPU feature discovery), as upstream's node-label path.

Pure: it reads node dicts from the informer's store and returns what it found or why not, so the
rule (most GPUs per node, then most memory; a user-set SKU selects the nodes; 32-GPU cap) is
testable without a cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from profiler.hardware import infer_sku

PRODUCT_LABEL = "nvidia.com/gpu.product"
COUNT_LABEL = "nvidia.com/gpu.count"
MEMORY_LABEL = "nvidia.com/gpu.memory"  # MiB, as GPU feature discovery writes it
AUTO_GPU_CAP = 32


@dataclass(frozen=True)
class Discovered:
    gpu_sku: str
    vram_mb: int
    num_gpus_per_node: int
    total_gpus: int
    nodes: int
    product: str


class DiscoveryError(Exception):
    """Nothing usable found; the message says what to set in spec.hardware instead."""


def needs_discovery(hardware: Mapping[str, Any] | None) -> bool:
    hw = hardware or {}
    return not (
        hw.get("gpuSku") and hw.get("vramMb") and hw.get("numGpusPerNode") and hw.get("totalGpus")
    )


def discover(nodes: Iterable[Mapping[str, Any]], wanted_sku: str | None = None) -> Discovered:
    groups: dict[tuple[str, int, int], list[str]] = {}
    products: dict[tuple[str, int, int], str] = {}
    seen_products: set[str] = set()
    for node in nodes:
        meta = node.get("metadata") or {}
        labels = meta.get("labels") or {}
        product = labels.get(PRODUCT_LABEL)
        if not product:
            continue
        seen_products.add(product)
        try:
            count = int(labels.get(COUNT_LABEL, "0"))
            memory = int(labels.get(MEMORY_LABEL, "0"))
        except ValueError:
            continue
        sku = infer_sku(product)
        if count <= 0 or sku is None or (wanted_sku and sku != wanted_sku):
            continue
        groups.setdefault((sku, count, memory), []).append(str(meta.get("name")))
        products.setdefault((sku, count, memory), product)
    if not groups:
        if wanted_sku and seen_products:
            raise DiscoveryError(
                f"no node has GPUs of spec.hardware.gpuSku {wanted_sku!r} "
                f"(found: {', '.join(sorted(seen_products))}); set spec.hardware.numGpusPerNode, "
                "vramMb and totalGpus, or fix gpuSku"
            )
        raise DiscoveryError(
            f"no node carries the GPU feature discovery labels {PRODUCT_LABEL} and {COUNT_LABEL} "
            "with a known GPU; set spec.hardware.gpuSku, vramMb, numGpusPerNode and totalGpus"
        )
    # Most GPUs per node, then most memory; more nodes of that type break a remaining tie.
    key, names = max(groups.items(), key=lambda kv: (kv[0][1], kv[0][2], len(kv[1])))
    sku, count, memory = key
    return Discovered(
        gpu_sku=sku,
        vram_mb=memory,
        num_gpus_per_node=count,
        total_gpus=min(len(names) * count, AUTO_GPU_CAP),
        nodes=len(names),
        product=products[key],
    )


def enrich(hardware: Mapping[str, Any] | None, found: Discovered) -> dict[str, Any]:
    """The user's hardware with the gaps filled; what the user set always wins."""
    hw = dict(hardware or {})
    hw.setdefault("gpuSku", found.gpu_sku)
    if found.vram_mb:
        hw.setdefault("vramMb", found.vram_mb)
    hw.setdefault("numGpusPerNode", found.num_gpus_per_node)
    hw.setdefault("totalGpus", found.total_gpus)
    return hw

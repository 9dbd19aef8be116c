"""GPU hardware table: the physical limits the performance model divides work by.

Figures (``data/hardware.json``) are dense (no sparsity) per-GPU peaks from vendor datasheets;
link bandwidths are per GPU and per direction (half the bidirectional figure vendors print). Each
entry carries the source of its figures so a reviewer can check them. The cluster's own view
(``vramMb`` and ``numGpusPerNode`` of the spec) overrides the table, because a SKU name does not
pin the memory variant (V100 16/32 GB, A100 40/80 GB) nor the server shape.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class GpuSpec:
    """One GPU as the estimator sees it (units: GiB, GB/s, dense TFLOPS)."""

    sku: str
    memory_gib: float
    mem_bw_gbps: float
    bf16_tflops: float  # FP16 where the GPU has no BF16 (Volta, Turing)
    fp8_tflops: float | None
    fp4_tflops: float | None
    intra_node_gbps: float  # per GPU, per direction, between GPUs of one node / NVLink domain
    inter_node_gbps: float  # per GPU, per direction, across nodes (InfiniBand/RoCE NIC)
    gpus_per_node: int
    vendor: str
    source: str
    # GPUs that share the fast intra-node link (72 on GB200/GB300 NVL72 racks, else the node).
    scaleup_domain: int = 0

    @property
    def domain(self) -> int:
        """How many GPUs a collective can span at ``intra_node_gbps``."""
        return self.scaleup_domain or self.gpus_per_node


_DATA = Path(__file__).parent / "data" / "hardware.json"


def _load() -> dict[str, GpuSpec]:
    raw: dict[str, dict[str, Any]] = json.loads(_DATA.read_text(encoding="utf-8"))["gpus"]
    return {sku: GpuSpec(sku=sku, **fields) for sku, fields in raw.items()}


_TABLE: dict[str, GpuSpec] = _load()

#: Every SKU of the DGDR ``gpuSku`` enum, ``gb10`` included (docs/dgdr-contract.md#gpu-skus).
SKUS: tuple[str, ...] = (
    "gb200_sxm",
    "gb10",
    "b300_sxm",
    "b200_sxm",
    "h200_sxm",
    "h100_sxm",
    "h100_pcie",
    "a100_sxm",
    "a100_pcie",
    "a30",
    "l40s",
    "l40",
    "l4",
    "v100_sxm",
    "v100_pcie",
    "t4",
    "mi200",
    "mi300",
)

# System ids used by AIConfigurator and the calibration data that differ from the enum spelling.
_ALIASES = {"gb200": "gb200_sxm", "gb300": "gb300_sxm", "b300": "b300_sxm", "b200": "b200_sxm"}


def known_systems() -> tuple[str, ...]:
    """Every SKU the table holds (the enum plus systems only seen in calibration data)."""
    return tuple(_TABLE)


def get_gpu(sku: str, *, vram_mb: int | None = None, gpus_per_node: int | None = None) -> GpuSpec:
    """The spec for ``sku``; the cluster's discovered memory and node shape take precedence."""
    key = _ALIASES.get(sku.strip().lower(), sku.strip().lower())
    spec = _TABLE.get(key)
    if spec is None:
        raise ValueError(f"unknown GPU SKU {sku!r}; known: {', '.join(SKUS)}")
    if vram_mb is not None:
        if vram_mb <= 0:
            raise ValueError(f"vramMb must be positive for SKU {sku!r}, got {vram_mb}")
        spec = replace(spec, memory_gib=vram_mb / 1024.0)
    if gpus_per_node is not None:
        if gpus_per_node <= 0:
            raise ValueError(
                f"numGpusPerNode must be positive for SKU {sku!r}, got {gpus_per_node}"
            )
        domain = spec.scaleup_domain if spec.scaleup_domain > gpus_per_node else 0
        spec = replace(spec, gpus_per_node=gpus_per_node, scaleup_domain=domain)
    return spec


# Order matters: longer names first so that "L40S" is not read as "L40" or "L4".
_PRODUCT_TOKENS: tuple[tuple[str, str | None], ...] = (
    ("GB200", "gb200_sxm"),
    ("GB10", "gb10"),
    ("B300", "b300_sxm"),
    ("B200", "b200_sxm"),
    ("H200", "h200_sxm"),
    ("H100", None),
    ("A100", None),
    ("A30", "a30"),
    ("L40S", "l40s"),
    ("L40", "l40"),
    ("L4", "l4"),
    ("V100", None),
    ("T4", "t4"),
    ("MI300", "mi300"),
    ("MI250", "mi200"),
    ("MI200", "mi200"),
)


def infer_sku(product: str) -> str | None:
    """Map a GPU product label (``NVIDIA-H100-80GB-HBM3``) to an enum SKU, or None.

    Mirrors the upstream operator's inference: SXM when the label says SXM/HGX/DGX, PCIe
    otherwise (so a bare "H100" label is read as PCIe, as upstream does).
    """
    norm = re.sub(r"[\s\-_]", "", product.upper())
    if not norm:
        return None
    sxm = any(tok in norm for tok in ("SXM", "HGX", "DGX"))
    for token, sku in _PRODUCT_TOKENS:
        if token in norm:
            if sku is not None:
                return sku
            family = token.lower()
            return f"{family}_sxm" if sxm else f"{family}_pcie"
    return None

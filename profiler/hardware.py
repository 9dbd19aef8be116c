"""GPU hardware table: the physical limits the performance model divides work by.

Figures are dense (no sparsity) per-GPU peaks from vendor datasheets; link bandwidths are per GPU
and per direction (half the bidirectional figure vendors print). Each entry carries the source of
its figures so a reviewer can check them. The cluster's own view (``vramMb`` and
``numGpusPerNode`` of the spec) overrides the table, because a SKU name does not pin the memory
variant (V100 16/32 GB, A100 40/80 GB) nor the server shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace


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


_NV = "nvidia"
_AMD = "amd"

_TABLE: dict[str, GpuSpec] = {
    s.sku: s
    for s in (
        GpuSpec(
            "gb200_sxm",
            185.0,
            8000.0,
            2500.0,
            5000.0,
            10000.0,
            900.0,
            100.0,
            4,
            _NV,
            "GB200 NVL72 datasheet (nvidia.com/en-us/data-center/gb200-nvl72), per GPU, dense; "
            "185 GiB usable of 192 GB HBM3e; NVLink5 1.8 TB/s bidirectional; 4 GPUs per tray, "
            "72-GPU NVLink domain",
            scaleup_domain=72,
        ),
        GpuSpec(
            "gb300_sxm",
            268.0,
            8000.0,
            2500.0,
            5000.0,
            15000.0,
            900.0,
            100.0,
            4,
            _NV,
            "GB300 NVL72 datasheet (nvidia.com/en-us/data-center/gb300-nvl72), per GPU, dense; "
            "288 GB HBM3e (about 268 GiB usable); NVLink5; 72-GPU NVLink domain",
            scaleup_domain=72,
        ),
        GpuSpec(
            "gb10",
            119.0,
            273.0,
            125.0,
            250.0,
            500.0,
            25.0,
            25.0,
            1,
            _NV,
            "DGX Spark (GB10) product page: 128 GB unified LPDDR5x at 273 GB/s, 1 PFLOP FP4 "
            "sparse -> 500 dense; FP8/BF16 halved per precision step (estimate); ConnectX-7 "
            "200 Gb/s between units",
        ),
        GpuSpec(
            "b300_sxm",
            268.0,
            8000.0,
            2250.0,
            4500.0,
            14000.0,
            900.0,
            100.0,
            8,
            _NV,
            "HGX B300 datasheet (nvidia.com/en-us/data-center/hgx), per GPU, dense: 288 GB "
            "HBM3e (about 268 GiB usable), 8 TB/s, NVLink5 1.8 TB/s bidirectional",
        ),
        GpuSpec(
            "b200_sxm",
            179.0,
            7700.0,
            2250.0,
            4500.0,
            9000.0,
            900.0,
            50.0,
            8,
            _NV,
            "HGX B200 datasheet (nvidia.com/en-us/data-center/hgx): 180 GB HBM3e (179 GiB "
            "reported), 62 TB/s per 8 GPUs, NVLink5 1.8 TB/s bidirectional; dense figures",
        ),
        GpuSpec(
            "h200_sxm",
            140.0,
            4800.0,
            989.0,
            1979.0,
            None,
            450.0,
            50.0,
            8,
            _NV,
            "H200 datasheet (nvidia.com/en-us/data-center/h200): 141 GB HBM3e, 4.8 TB/s, "
            "NVLink4 900 GB/s bidirectional; dense TFLOPS",
        ),
        GpuSpec(
            "h100_sxm",
            79.6,
            3350.0,
            989.0,
            1979.0,
            None,
            450.0,
            50.0,
            8,
            _NV,
            "H100 datasheet (nvidia.com/en-us/data-center/h100), SXM5 80 GB HBM3, 3.35 TB/s, "
            "NVLink4 900 GB/s bidirectional; dense TFLOPS",
        ),
        GpuSpec(
            "h100_pcie",
            79.6,
            2000.0,
            756.0,
            1513.0,
            None,
            64.0,
            25.0,
            8,
            _NV,
            "H100 PCIe product brief PB-11133: 80 GB HBM2e, 2.0 TB/s, PCIe Gen5 x16 "
            "(64 GB/s per direction); dense TFLOPS",
        ),
        GpuSpec(
            "a100_sxm",
            79.2,
            2039.0,
            312.0,
            None,
            None,
            300.0,
            25.0,
            8,
            _NV,
            "A100 datasheet (nvidia.com/en-us/data-center/a100), SXM4 80 GB HBM2e, 2.039 TB/s, "
            "NVLink3 600 GB/s bidirectional; no FP8",
        ),
        GpuSpec(
            "a100_pcie",
            79.2,
            1935.0,
            312.0,
            None,
            None,
            32.0,
            25.0,
            8,
            _NV,
            "A100 datasheet, PCIe 80 GB HBM2e, 1.935 TB/s, PCIe Gen4 x16 (32 GB/s per "
            "direction); no FP8",
        ),
        GpuSpec(
            "a30",
            23.5,
            933.0,
            165.0,
            None,
            None,
            32.0,
            12.5,
            8,
            _NV,
            "A30 datasheet (nvidia.com/en-us/data-center/products/a30-gpu): 24 GB HBM2, "
            "933 GB/s, BF16 165 TFLOPS dense, PCIe Gen4 x16; no FP8",
        ),
        GpuSpec(
            "l40s",
            45.0,
            864.0,
            362.0,
            733.0,
            None,
            32.0,
            12.5,
            8,
            _NV,
            "L40S datasheet (nvidia.com/en-us/data-center/l40s): 48 GB GDDR6, 864 GB/s, "
            "PCIe Gen4 x16, no NVLink; dense TFLOPS",
        ),
        GpuSpec(
            "l40",
            45.0,
            864.0,
            181.0,
            362.0,
            None,
            32.0,
            12.5,
            8,
            _NV,
            "L40 datasheet (nvidia.com/en-us/data-center/l40): 48 GB GDDR6, 864 GB/s, "
            "PCIe Gen4 x16, no NVLink; dense TFLOPS",
        ),
        GpuSpec(
            "l4",
            22.5,
            300.0,
            121.0,
            242.0,
            None,
            32.0,
            12.5,
            8,
            _NV,
            "L4 datasheet (nvidia.com/en-us/data-center/l4): 24 GB GDDR6, 300 GB/s, "
            "PCIe Gen4 x16; dense TFLOPS",
        ),
        GpuSpec(
            "v100_sxm",
            32.0,
            900.0,
            125.0,
            None,
            None,
            150.0,
            12.5,
            8,
            _NV,
            "V100 datasheet (nvidia.com/en-us/data-center/v100): SXM2 32 GB HBM2 (16 GB "
            "variant via vramMb), 900 GB/s, FP16 tensor 125 TFLOPS (no BF16), NVLink2 300 GB/s "
            "bidirectional",
        ),
        GpuSpec(
            "v100_pcie",
            32.0,
            900.0,
            112.0,
            None,
            None,
            16.0,
            12.5,
            8,
            _NV,
            "V100 datasheet: PCIe 32 GB HBM2, 900 GB/s, FP16 tensor 112 TFLOPS (no BF16), "
            "PCIe Gen3 x16",
        ),
        GpuSpec(
            "t4",
            15.0,
            320.0,
            65.0,
            None,
            None,
            16.0,
            12.5,
            8,
            _NV,
            "T4 datasheet (nvidia.com/en-us/data-center/tesla-t4): 16 GB GDDR6, 320 GB/s, "
            "FP16 mixed 65 TFLOPS (no BF16), PCIe Gen3 x16",
        ),
        GpuSpec(
            "mi200",
            64.0,
            1600.0,
            191.5,
            None,
            None,
            100.0,
            25.0,
            8,
            _AMD,
            "AMD Instinct MI250X spec page (amd.com): per GCD (the device Kubernetes schedules), "
            "64 GB HBM2e, 1.6 TB/s, 191.5 TFLOPS BF16 dense; Infinity Fabric links (estimate "
            "100 GB/s per GCD per direction); 4 OAM = 8 GCDs per node",
        ),
        GpuSpec(
            "mi300",
            192.0,
            5300.0,
            1307.0,
            2615.0,
            None,
            300.0,
            50.0,
            8,
            _AMD,
            "AMD Instinct MI300X spec page (amd.com/en/products/accelerators/instinct/mi300/"
            "mi300x): 192 GB HBM3, 5.3 TB/s, dense BF16/FP8; 7 xGMI links x 64 GB/s per "
            "direction, about 300 GB/s effective for ring all-reduce (estimate)",
        ),
    )
}

#: Every SKU of the DGDR ``gpuSku`` enum (dgdr-spec.md section 8, including C's ``gb10``).
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

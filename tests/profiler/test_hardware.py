"""The hardware table covers the whole gpuSku enum with physically sane figures."""

from __future__ import annotations

import pytest

from profiler.hardware import SKUS, get_gpu, infer_sku, known_systems

CRD_ENUM = {
    "gb200_sxm", "gb10", "b300_sxm", "b200_sxm", "h200_sxm", "h100_sxm", "h100_pcie",
    "a100_sxm", "a100_pcie", "a30", "l40s", "l40", "l4", "v100_sxm", "v100_pcie", "t4",
    "mi200", "mi300",
}  # fmt: skip


def test_every_enum_sku_is_in_the_table() -> None:
    assert set(SKUS) == CRD_ENUM
    assert set(SKUS) <= set(known_systems())


@pytest.mark.parametrize("sku", SKUS)
def test_figures_are_sane(sku: str) -> None:
    g = get_gpu(sku)
    assert g.sku == sku
    assert 8 <= g.memory_gib <= 300
    assert 200 <= g.mem_bw_gbps <= 10_000
    assert 50 <= g.bf16_tflops <= 3_000
    if g.fp8_tflops is not None:
        assert g.fp8_tflops >= 1.9 * g.bf16_tflops
    if g.fp4_tflops is not None:
        assert g.fp8_tflops is not None and g.fp4_tflops >= 1.9 * g.fp8_tflops
    assert g.intra_node_gbps >= g.inter_node_gbps > 0
    assert g.gpus_per_node >= 1 and g.domain >= g.gpus_per_node
    assert g.vendor in ("nvidia", "amd")
    assert len(g.source) > 20  # names where the figures come from


def test_generations_are_ordered() -> None:
    """Newer data-centre parts are never slower than the ones they replace."""
    chain = ["v100_sxm", "a100_sxm", "h100_sxm", "h200_sxm", "b200_sxm"]
    bws = [get_gpu(s).mem_bw_gbps for s in chain]
    flops = [get_gpu(s).bf16_tflops for s in chain]
    assert bws == sorted(bws) and flops == sorted(flops)
    assert get_gpu("h100_pcie").intra_node_gbps < get_gpu("h100_sxm").intra_node_gbps
    assert get_gpu("gb200_sxm").domain == 72


def test_cluster_figures_override_the_table() -> None:
    g = get_gpu("v100_sxm", vram_mb=16 * 1024, gpus_per_node=4)
    assert g.memory_gib == pytest.approx(16.0)
    assert g.gpus_per_node == 4
    assert get_gpu("gb200_sxm", gpus_per_node=4).domain == 72


def test_calibration_system_ids_are_accepted() -> None:
    assert get_gpu("gb200").sku == "gb200_sxm"
    assert get_gpu("GB300").sku == "gb300_sxm"


def test_unknown_sku_names_the_sku() -> None:
    with pytest.raises(ValueError, match="h300_sxm"):
        get_gpu("h300_sxm")
    with pytest.raises(ValueError, match="vramMb"):
        get_gpu("l4", vram_mb=0)
    with pytest.raises(ValueError, match="numGpusPerNode"):
        get_gpu("l4", gpus_per_node=0)


@pytest.mark.parametrize(
    ("product", "sku"),
    [
        ("NVIDIA-H100-80GB-HBM3", "h100_pcie"),  # no SXM token: upstream reads it as PCIe
        ("NVIDIA-H100-SXM5-80GB", "h100_sxm"),
        ("NVIDIA H100 PCIe", "h100_pcie"),
        ("NVIDIA-DGX-H100", "h100_sxm"),
        ("NVIDIA-A100-SXM4-80GB", "a100_sxm"),
        ("NVIDIA-A100-PCIE-40GB", "a100_pcie"),
        ("NVIDIA-H200", "h200_sxm"),
        ("NVIDIA-B200", "b200_sxm"),
        ("NVIDIA-GB200", "gb200_sxm"),
        ("NVIDIA-B300-SXM6-AC", "b300_sxm"),
        ("NVIDIA-GB10", "gb10"),
        ("NVIDIA-A30", "a30"),
        ("NVIDIA-L40S", "l40s"),
        ("NVIDIA L40", "l40"),
        ("NVIDIA-L4", "l4"),
        ("Tesla-V100-SXM2-32GB", "v100_sxm"),
        ("Tesla-V100-PCIE-16GB", "v100_pcie"),
        ("Tesla-T4", "t4"),
        ("AMD Instinct MI300X", "mi300"),
        ("AMD Instinct MI250X", "mi200"),
        ("Quadro RTX 8000", None),
        ("", None),
    ],
)
def test_infer_sku(product: str, sku: str | None) -> None:
    assert infer_sku(product) == sku

"""GPU discovery from GPU-feature-discovery node labels (docs/dgdr-contract.md#gpu-discovery)."""

from __future__ import annotations

import pytest

from controller.dgdr.discovery import DiscoveryError, discover, enrich, needs_discovery


def node(name: str, product: str, count: int, memory: int) -> dict:
    return {
        "metadata": {
            "name": name,
            "labels": {
                "nvidia.com/gpu.product": product,
                "nvidia.com/gpu.count": str(count),
                "nvidia.com/gpu.memory": str(memory),
            },
        }
    }


def test_picks_most_gpus_per_node_and_caps_total() -> None:
    nodes = [node(f"h{i}", "NVIDIA-H100-80GB-HBM3-SXM5", 8, 81559) for i in range(5)]
    nodes += [node("l4", "NVIDIA-L4", 1, 23034), {"metadata": {"name": "cpu", "labels": {}}}]
    found = discover(nodes)
    assert (found.gpu_sku, found.num_gpus_per_node, found.vram_mb) == ("h100_sxm", 8, 81559)
    assert found.nodes == 5 and found.total_gpus == 32  # 40 GPUs, capped at 32


def test_user_sku_selects_nodes() -> None:
    nodes = [node("h", "NVIDIA-H100-80GB-HBM3-SXM5", 8, 81559), node("l4", "NVIDIA-L4", 1, 23034)]
    found = discover(nodes, "l4")
    assert (found.gpu_sku, found.total_gpus) == ("l4", 1)
    with pytest.raises(DiscoveryError, match=r"spec\.hardware\.gpuSku 'a100_sxm'"):
        discover(nodes, "a100_sxm")


def test_nothing_to_discover_says_what_to_set() -> None:
    with pytest.raises(DiscoveryError, match=r"spec\.hardware\.gpuSku"):
        discover([{"metadata": {"name": "cpu", "labels": {}}}])


def test_enrich_keeps_what_user_set() -> None:
    found = discover([node("h", "NVIDIA-H100-80GB-HBM3-SXM5", 8, 81559)])
    hw = enrich({"totalGpus": 4}, found)
    assert hw == {"gpuSku": "h100_sxm", "vramMb": 81559, "numGpusPerNode": 8, "totalGpus": 4}
    assert needs_discovery({"gpuSku": "h100_sxm"}) and not needs_discovery(hw)

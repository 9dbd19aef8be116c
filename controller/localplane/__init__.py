"""A local control plane (kube-apiserver + etcd on loopback) for tests, benchmarks and the demo."""

from .binaries import BinariesMissing, find_binaries
from .plane import LocalControlPlane, free_port, write_kubeconfig

__all__ = ["BinariesMissing", "LocalControlPlane", "find_binaries", "free_port", "write_kubeconfig"]

"""A local control plane (kube-apiserver + etcd on loopback) for tests, benchmarks and the demo.

Development tooling, outside the wheel and the image: import it from a checkout (the repository
root on ``sys.path``, as pytest and the bench scripts have it), run it as
``python -m devtools.localplane``.
"""

from .binaries import BinariesMissing, find_binaries
from .plane import LocalControlPlane, free_port, write_kubeconfig

__all__ = ["BinariesMissing", "LocalControlPlane", "find_binaries", "free_port", "write_kubeconfig"]

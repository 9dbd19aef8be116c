"""Every metric the project exports, defined once.

``metrics.runtime`` holds the controller-runtime compatible families (reconcile, workqueue, leader
election), ``metrics.rest`` the API-request and informer families, ``metrics.dgdr`` the per-object
DGDR families. Both register into
``REGISTRY`` so a process can serve exactly this project's metrics.
"""

from prometheus_client import CollectorRegistry

REGISTRY = CollectorRegistry(auto_describe=True)

__all__ = ["REGISTRY"]

"""kubernetes_asyncio's credential loaders, without loading its generated API client.

The controller takes from kubernetes_asyncio only what is subtle to get right: the kubeconfig and
in-cluster loaders (contexts, exec and OIDC credentials, rotating service-account tokens) and
the ``Configuration`` they fill in. But any import from kubernetes_asyncio runs its package
``__init__``, which imports the whole generated client: some 840 API and model modules, about
60 MB of resident memory in every process that merely wants to read a kubeconfig.

So before importing ``kubernetes_asyncio.config``, the two packages on its path
(``kubernetes_asyncio`` and ``kubernetes_asyncio.client``) are registered as modules whose
``__init__`` has not run yet; the two submodules the loaders need (``client.configuration``,
and ``client.api_client`` only if ``new_client_from_config`` is ever called) are imported on
their own. Anything else asked of those packages (``client.CoreV1Api``, say) runs their real
``__init__`` at that moment, so other code in the same process, tests included, sees the full
library as usual. If kubernetes_asyncio was imported before this module, nothing is changed.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any


def _deferred_package(name: str) -> ModuleType:
    """``name`` registered in ``sys.modules`` without running its ``__init__``. An attribute it
    lacks is looked up as a submodule first (imported alone); anything else runs the real
    ``__init__`` (once), as a plain import would have."""
    found = sys.modules.get(name)
    if found is not None:
        return found
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"no module named {name!r}")
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader
    ran = False

    def __getattr__(attr: str) -> Any:
        nonlocal ran
        if attr.startswith("__"):
            raise AttributeError(f"module {name!r} has no attribute {attr!r}")
        if importlib.util.find_spec(f"{name}.{attr}") is not None:
            return importlib.import_module(f"{name}.{attr}")
        if ran:
            raise AttributeError(f"module {name!r} has no attribute {attr!r}")
        ran = True
        loader.exec_module(module)
        return getattr(module, attr)

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[name] = module
    return module


class _ApiClientOnDemand:
    """Stands in for ``kubernetes_asyncio.client.ApiClient``, which ``kube_config`` imports by
    name but only ``new_client_from_config`` (unused here) constructs: the real class, and the
    generated models it imports, are loaded only if that happens."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        from kubernetes_asyncio.client.api_client import ApiClient

        return ApiClient(*args, **kwargs)


def _load() -> tuple[ModuleType, type[Any]]:
    if "kubernetes_asyncio.client" not in sys.modules:
        _deferred_package("kubernetes_asyncio")
        client = _deferred_package("kubernetes_asyncio.client")
        configuration = importlib.import_module("kubernetes_asyncio.client.configuration")
        setattr(client, "Configuration", configuration.Configuration)  # noqa: B010
        setattr(client, "ApiClient", _ApiClientOnDemand)  # noqa: B010
    kube_config = importlib.import_module("kubernetes_asyncio.config")
    configuration = importlib.import_module("kubernetes_asyncio.client.configuration")
    return kube_config, configuration.Configuration


if TYPE_CHECKING:  # the real names, for the type checker (the library ships no types)
    from kubernetes_asyncio import config
    from kubernetes_asyncio.client import Configuration
else:
    config, Configuration = _load()
ConfigException: type[Exception] = config.ConfigException

__all__ = ["ConfigException", "Configuration", "config"]

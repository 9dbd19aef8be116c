"""``python -m controller run``: the controller. ``python -m controller migrate-storage``: rewrite
every DGDR in the storage version (v1beta1) and drop older versions from the CRD's
``status.storedVersions`` (deploy/README.md, switching from the Dynamo operator). (The demo is
development tooling: ``hack/demo.sh``, not part of the shipped package.)"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from controller import config

log = logging.getLogger("controller")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m controller", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run the DGDR controller")
    config.add_arguments(run_p)
    mig_p = sub.add_parser(
        "migrate-storage",
        help="rewrite every DGDR in the storage version; storedVersions: [v1beta1]",
    )
    mig_p.add_argument("--kubeconfig", help="kubeconfig file [default: KUBECONFIG, in-cluster]")
    mig_p.add_argument("--context", help="kubeconfig context [default: the current one]")
    args = ap.parse_args(argv)
    if args.command == "migrate-storage":
        from controller.machinery.logging_setup import configure_logging

        configure_logging("INFO", log_format="console")
        return asyncio.run(_migrate(args.kubeconfig, args.context))
    from controller.dgdr.app import run
    from controller.machinery.client import KubeconfigError
    from controller.machinery.logging_setup import configure_logging

    cfg = config.from_args(args, run_p)
    configure_logging(cfg.log_level, log_format=cfg.log_format)
    for warning in cfg.warnings:
        log.warning("%s", warning)
    try:
        return asyncio.run(run(cfg))
    except KubeconfigError as err:
        log.error("%s", err)  # one line: which file, which context, what is wrong
        return 1


async def _migrate(kubeconfig: str | None, context: str | None) -> int:
    from controller.dgdr import api
    from controller.machinery.client import ApiError, KubeClient, KubeconfigError
    from controller.machinery.storage_version import migrate

    try:
        client = await KubeClient.connect(kubeconfig, context=context)
    except KubeconfigError as err:
        log.error("%s", err)
        return 1
    try:
        result = await migrate(client, api.DGDR_CRD_NAME, api.DGDR_RESOURCE)
    except (ApiError, ValueError) as err:
        log.error("storage version migration failed: %s", err)
        return 1
    finally:
        await client.close()
    print(
        f"{result.rewritten} DGDRs rewritten in {api.DGDR_RESOURCE.version}; storedVersions "
        f"{list(result.stored_before)} -> {list(result.stored_after)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

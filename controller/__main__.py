"""``python -m controller run``: the controller. (The demo is development tooling:
``hack/demo.sh``, not part of the shipped package.)"""

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
    args = ap.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())

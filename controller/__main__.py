"""``python -m controller run`` (the controller) and ``python -m controller demo`` (the tour)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from controller import config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m controller", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="run the DGDR controller")
    config.add_arguments(run_p)
    demo_p = sub.add_parser("demo", help="local control plane + controller + a sample DGDR")
    demo_p.add_argument(
        "--sample", default="deploy/samples/sla-ttft-itl.yaml", help="the DGDR manifest to apply"
    )
    demo_p.add_argument(
        "--keep",
        action="store_true",
        help="keep everything running until Ctrl-C after the sample is deployed",
    )
    args = ap.parse_args(argv)
    if args.command == "run":
        from controller.dgdr.app import run

        return asyncio.run(run(config.from_args(args, run_p)))
    from controller.demo import demo

    return demo(args.sample, keep=args.keep)


if __name__ == "__main__":
    sys.exit(main())

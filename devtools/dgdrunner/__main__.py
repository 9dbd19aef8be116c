"""``python -m devtools.dgdrunner --kubeconfig F``: run every DGD of a local control plane as
real Dynamo processes (frontend + mock engines) until SIGTERM/Ctrl-C, then stop them all.

Needs the Dynamo virtualenv: ``bash hack/ensure-dynamo.sh`` (``.venv-dynamo``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from pathlib import Path

from .procs import Backoff
from .runner import DEFAULT_PYTHON, Options, run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devtools.dgdrunner", description=__doc__)
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--namespace", help="only this namespace (default: every namespace)")
    ap.add_argument("--dgd-version", help="DGD API version (default: what the API prefers)")
    ap.add_argument("--workdir", help="per-DGD discovery stores, logs (default: a temp dir)")
    ap.add_argument(
        "--cache-dir",
        default=str(Path.home() / ".cache" / "dgdrunner"),
        help="model directories (config.json + tokenizer), reused across runs",
    )
    ap.add_argument("--models-dir", help="<dir>/<model>/config.json is a model's config")
    ap.add_argument("--dynamo-python", default=DEFAULT_PYTHON, help="the Dynamo venv's python")
    ap.add_argument("--tick", type=float, default=0.5, help="seconds between health checks")
    ap.add_argument("--stop-grace", type=float, default=5.0)
    ap.add_argument("--backoff-initial", type=float, default=1.0)
    ap.add_argument("--backoff-max", type=float, default=30.0)
    ap.add_argument("--speedup-ratio", type=float, help="passed to every mocker")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s dgdrunner %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if not Path(args.dynamo_python).exists():
        print(
            f"{args.dynamo_python} is missing: build the Dynamo venv with "
            "`bash hack/ensure-dynamo.sh`",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="dgdrunner-") as tmp:
        opts = Options(
            dynamo_python=args.dynamo_python,
            workdir=Path(args.workdir or tmp),
            cache_dir=Path(args.cache_dir),
            namespace=args.namespace,
            models_dir=Path(args.models_dir) if args.models_dir else None,
            tick=args.tick,
            stop_grace=args.stop_grace,
            backoff=Backoff(initial=args.backoff_initial, cap=args.backoff_max),
            speedup_ratio=args.speedup_ratio,
        )
        return asyncio.run(run(args.kubeconfig, opts, args.dgd_version))


if __name__ == "__main__":
    sys.exit(main())

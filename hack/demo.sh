#!/usr/bin/env bash
# The main job on a fresh machine: a local control plane, the CRDs, the controller, and a sample
# DGDR going through its phases, deployed onto the local DGD runner (Dynamo's frontend and mock
# engines as processes, from .venv-dynamo), then serving: a chat completion and a short aiperf run.
# --keep leaves it serving, with the commands to try it by hand, until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib.sh
ensure_venv
ensure_binaries
bash hack/ensure-dynamo.sh
exec .venv/bin/python -m devtools.demo "$@"

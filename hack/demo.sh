#!/usr/bin/env bash
# The main job on a fresh machine: a local control plane, the CRDs, the controller, and a sample
# DGDR going through its phases (with a clearly labelled stand-in for the Dynamo operator).
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib.sh
ensure_venv
ensure_apt openssl openssl
ensure_binaries
exec .venv/bin/python -m controller demo "$@"

#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what it needs (Python packages in .venv,
# Prometheus from Debian, the control-plane binaries built once into a cache), then pytest.
# Extra arguments go to pytest, e.g. `bash hack/test.sh tests/profiler -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/lib.sh
ensure_venv
ensure_apt prometheus prometheus
ensure_binaries
bash tests/deploy/ensure-helm.sh   # helm, built once from Go modules, for the chart tests
# Dynamo's frontend + mocker and aiperf, each in its own venv (cached) for tests/serving; the
# serving tests skip, saying why, when the Dynamo venv cannot be built.
bash hack/ensure-dynamo.sh || echo "hack/ensure-dynamo.sh failed: tests/serving will be skipped" >&2
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit $rc

#!/usr/bin/env bash
# Regenerates grafana-dashboard.schema.json from Grafana's published TypeScript types.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
npm init -y >/dev/null
npm install --no-audit --no-fund --silent \
  @grafana/schema@13.2.3 ts-json-schema-generator@2.9.0 typescript@5.9.3
npx ts-json-schema-generator \
  --path node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen.d.ts \
  --type Dashboard --no-type-check -o dashboard.schema.json
cp dashboard.schema.json "$here/grafana-dashboard.schema.json"
echo "wrote $here/grafana-dashboard.schema.json"

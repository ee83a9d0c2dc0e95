#!/usr/bin/env bash
# Installs the npm dependencies (once) and builds the native addon and the
# standalone runtime (cargo rebuilds only what changed). Used by `npm run
# build`, `npm run demo`, `npm test` and `npm run bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
  echo "edgefc: building needs a Rust toolchain (cargo); see README 'Install'" >&2
  exit 1
fi
if [ ! -x node_modules/.bin/napi ] || [ ! -x node_modules/.bin/tsc ] || [ ! -x node_modules/.bin/eslint ] || [ ! -d node_modules/puppeteer-core ]; then
  # Not `npm ci`: the lock file lists only the platform packages of the
  # napi-rs CLI that exist for this platform, which `npm ci` rejects as out
  # of sync. `npm install` installs exactly the locked versions all the same.
  npm install --no-audit --no-fund
fi
bash scripts/services.sh
node_modules/.bin/napi build --platform --release --js native.js --dts native.d.ts
node scripts/error-codes.js
cargo build --release -p edgefc-core --bin edgefc-runtime
cp target/release/edgefc-runtime edgefc-runtime.tmp
mv -f edgefc-runtime.tmp edgefc-runtime

#!/usr/bin/env bash
# The project's test command (npm test). Extra arguments go to vitest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Test helpers spawn nutcracker by name, and Debian installs it in /usr/sbin.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

bash scripts/ensure-servers.sh

if [ ! -d node_modules ]; then
  # npm install, not npm ci: npm 11 here rejects its own lock file in ci
  # ("Missing: <other platforms' optional packages>"); install still follows it.
  npm install --no-audit --no-fund
fi

npm run build

# vitest's own summary, then the plain "N passed, N failed" line CI reads.
results="$(mktemp)"
status=0
npx vitest run --reporter=default --reporter=json --outputFile="$results" "$@" || status=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' "$results" || true
rm -f "$results"
exit "$status"

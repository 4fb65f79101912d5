#!/usr/bin/env bash
# Install what the browser test needs: Debian's chromium (no browser download by a test tool) and
# playwright-core from the npm registry (tests/browser/package-lock.json). Never fatal here: the test itself
# reports what is missing (and fails under CI=true, skips on a developer machine without root).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[browser] installing Debian's chromium" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
      || echo "[browser] could not install chromium" >&2
  fi
fi
if command -v npm >/dev/null 2>&1 && [ ! -d "$ROOT/tests/browser/node_modules/playwright-core" ]; then
  (cd "$ROOT/tests/browser" && npm ci --no-audit --no-fund --silent) >&2 || echo "[browser] npm ci failed" >&2
fi
exit 0

#!/usr/bin/env bash
# The official MCP conformance suite (@modelcontextprotocol/conformance), which needs Node 22: both come from npm
# into a local prefix (the npm package `node@22` ships the Node binary), so the machine's own Node is not used.
#
#   tests/integration/scripts/mcp_conformance.sh install             # once (needs npm and the npm registry)
#   tests/integration/scripts/mcp_conformance.sh run http://127.0.0.1:8789/mcp [results-dir]
#
# `run` tests a running `memory-spine mcp --http` (started without --http-token: the suite sends no token) against
# tests/integration/mcp-conformance-expected-failures.yml and exits non-zero on any unexpected failure or stale
# expected failure. tests/integration/test_mcp_conformance.py starts the servers and runs this.
# MEMORY_SPINE_MCP_CONFORMANCE_DIR overrides the prefix (default: build/mcp-conformance in the checkout).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"
PREFIX="${MEMORY_SPINE_MCP_CONFORMANCE_DIR:-$ROOT/build/mcp-conformance}"
SUITE_VERSION="0.1.16"
NODE="$PREFIX/node_modules/node/bin/node"
CLI="$PREFIX/node_modules/@modelcontextprotocol/conformance/dist/index.js"

case "${1:-}" in
  install)
    if [[ -x "$NODE" && -f "$CLI" ]]; then
      echo "mcp-conformance: already installed in $PREFIX"
      exit 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
      echo "mcp-conformance: npm is not available; cannot install the suite" >&2
      exit 3
    fi
    mkdir -p "$PREFIX"
    npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error \
      "node@22" "@modelcontextprotocol/conformance@$SUITE_VERSION" >&2
    "$NODE" --version >/dev/null
    echo "mcp-conformance: installed in $PREFIX (node $("$NODE" --version))"
    ;;
  run)
    url="${2:?usage: $0 run URL [results-dir]}"
    out="${3:-$(mktemp -d)}"
    if [[ ! -x "$NODE" || ! -f "$CLI" ]]; then
      echo "mcp-conformance: not installed in $PREFIX; run: $0 install" >&2
      exit 3
    fi
    exec "$NODE" "$CLI" server --url "$url" -o "$out" \
      --expected-failures "$ROOT/tests/integration/mcp-conformance-expected-failures.yml"
    ;;
  *)
    echo "usage: $0 install | run URL [results-dir]" >&2
    exit 2
    ;;
esac

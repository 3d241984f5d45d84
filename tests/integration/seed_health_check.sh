# Quick health verification for an agentic workflow deployment
#!/bin/bash
set -e

echo "=== Pre-deploy health check ==="
curl -sf http://127.0.0.1:8788/health || { echo "FAIL: Memory Spine down"; exit 1; }
curl -sf http://127.0.0.1:8901/health || { echo "FAIL: ML Router down"; exit 1; }
curl -sf http://127.0.0.1:8001/health || { echo "FAIL: AgentZ down"; exit 1; }

echo "=== Memory Spine connectivity ==="
RESULT=$(curl -s http://127.0.0.1:8788/stats | python3 -c "import sys,json; d=json.load(sys.stdin); print(d.get('total_memories', 0))")
echo "Memory count: $RESULT"
[ "$RESULT" -gt 0 ] || { echo "WARN: Memory Spine is empty"; }

echo "=== All checks passed ==="

"""Crash test, short version: concurrent writers over HTTP, SIGKILL at random instants, during an index save and
during a large batch; after each restart every acknowledged write is checked (benchmarks/crash_test.py).

The long run: `python -m benchmarks.crash_test --cycles 20`.
"""

from __future__ import annotations

import pytest

from benchmarks.crash_test import check_data_dir, run_cycles

pytestmark = pytest.mark.chaos


def _run(server, **kw):
    ledger, reports = run_cycles(server, log=lambda line: print(line), **kw)
    violations = [v for r in reports for v in r.violations]
    assert not violations, "\n".join(violations[:20])
    assert ledger.acked_ops > 0 and ledger.live()
    assert server.terminate() == 0
    rc, report = check_data_dir(server.data_dir, server.embedder)
    assert rc == 0, report
    assert report["rows"] == report["index_elements"] == len(ledger.live())
    return ledger, reports


def test_kill_9_loses_no_acknowledged_write(server_factory):
    """Fake embedder: a kill at a random instant, one during an index save and one during a 150-record batch."""
    server = server_factory(start=False, embedder="fake", args=["--log-level", "warning"])
    _, reports = _run(
        server, cycles=3, workers=6, seconds=1.0, modes=("save", "batch", "random"), batch_size=150, max_live=25
    )
    assert any("during index save" in r.mode for r in reports), [r.mode for r in reports]


def test_kill_9_with_the_real_model(server_factory):
    """The real ONNX model: embedding makes writes slower, so the kill lands in a different mix of moments."""
    server = server_factory(start=False, embedder="onnx", args=["--log-level", "warning"])
    _run(server, cycles=2, workers=4, seconds=3.0, modes=("batch", "random"), batch_size=48, max_live=15, seed=7)


def test_sigterm_under_load_exits_0_saves_the_index_and_loses_nothing(server_factory):
    server = server_factory(start=False, embedder="fake", args=["--log-level", "warning"])
    _, reports = _run(server, cycles=1, workers=6, seconds=1.5, modes=("term",), max_live=25, seed=3)
    assert "exit 0" in reports[0].mode, reports[0].mode
    assert reports[0].index_open == "loaded (caught up 0)", reports[0].index_open

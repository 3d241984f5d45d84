"""What the console's pages show, read through `MemoryService` (never SQL) and the service's Prometheus registry.
One module per page; api/ui.py routes to them (HTTP is its job; these raise the service's own errors, NotFound
and InvalidInput):

    overview_page.py    /ui            counts and sizes, request rates and latency, search plans
    workflows_page.py   /ui/workflows  workflows with their status (status.py decides it)
    workflow_page.py    /ui/workflows/{id}  steps, runs, events, escalations, dedup records of one workflow
    traces_page.py      /ui/traces     stored traces, metadata only
    trace_page.py       /ui/traces/{id}     one trace as a waterfall
    status.py           a workflow's status and a run's state, shared by the two workflow pages
    _shared.py          reads scoped to the kit's namespace, a stored trace read back as a tree of spans

The workflow and trace pages read the records workflow_kit writes, in the formats workflow_kit/records.py
defines, from the kit's namespace (`_kit/<namespace>`, default `_kit/default`); the overview counts one
namespace (default `default`) and lists them all.
"""

from __future__ import annotations

from ._shared import KIT_DEFAULT
from .overview_page import Rates, latency, overview, plans, quantile, request_counts
from .status import STATUSES, run_state, workflow_status
from .trace_page import trace, waterfall
from .traces_page import traces
from .workflow_page import EVENT_KINDS, workflow
from .workflows_page import workflows

__all__ = [
    "EVENT_KINDS",
    "KIT_DEFAULT",
    "STATUSES",
    "Rates",
    "latency",
    "overview",
    "plans",
    "quantile",
    "request_counts",
    "run_state",
    "trace",
    "traces",
    "waterfall",
    "workflow",
    "workflow_status",
    "workflows",
]

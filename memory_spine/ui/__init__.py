"""The web console's data: what its pages show, built from `MemoryService` answers and the service's metrics.

`views` holds the reading (workflows, traces, overview); `api/ui.py` serves the pages and this data over HTTP.
Templates and static files live in `memory_spine/templates` and `memory_spine/static`.
"""

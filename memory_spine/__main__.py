"""`python -m memory_spine ...` is `memory-spine ...`."""

from .cli import main

raise SystemExit(main())

"""JSON helpers shared by the kit: the one place that decides what "must be JSON" means.

Checkpoints, dedup results and trace attributes all cross the wire as JSON. A value that would not survive the
round trip (a datetime, a set, NaN) is reported where it was produced, not as an HTTP 422 three calls later.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import NotJSON


def roundtrip(value: Any, what: str) -> Any:
    """Return `value` as it will come back from the service (tuples become lists, int keys strings).

    Runs fresh and resumed alike then see the same values. Raises `NotJSON` naming `what` otherwise.
    """
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise NotJSON(what, f"{type(value).__name__} value is not JSON: {exc}") from None
    return json.loads(text)


def dumps(value: Any) -> str:
    """Compact JSON for span attributes; values that are not JSON are shown by repr()."""
    return json.dumps(value, default=repr, separators=(",", ":"))

"""The JSON response class: orjson-rendered, skipping pydantic on the hot path (the core returns dicts)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)

"""The HTTP layer: the only place that imports FastAPI. `create_app(service_or_settings)` builds the app."""

from .app import create_app

__all__ = ["create_app"]

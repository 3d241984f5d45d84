"""The release number, in a module of its own so that modules inside the package can import it without
importing the package (`from . import __version__` in `service.py` made an import circle with `__init__`)."""

__version__ = "0.1.0"

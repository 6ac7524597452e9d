"""The package version, in one place (``arraymel.__version__``, ``show_config()``, the bench's JSON)."""

__version__ = "0.1.0"

"""The version of the three packages, which share one number (CHANGELOG.md)."""

__version__ = "0.1.0"

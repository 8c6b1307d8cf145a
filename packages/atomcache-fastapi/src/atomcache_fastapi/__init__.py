"""FastAPI adapter for atomcache (the adapter itself is not written yet)."""

__all__: list[str] = []

"""Fixtures of the centre's tests: `store`, a fresh migrated store on each backend."""

from store_support import store

__all__ = ["store"]

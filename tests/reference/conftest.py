"""Fixtures of the reference lists' tests: `store`, a fresh migrated store on each backend."""

from store_support import store

__all__ = ["store"]

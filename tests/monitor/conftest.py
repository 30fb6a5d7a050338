"""Fixtures of the monitor's tests: `store`, a fresh store on each backend (for the journal)."""

from store_support import store

__all__ = ["store"]

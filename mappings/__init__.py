"""Declarative mappings between external systems' payloads and the unified standard."""

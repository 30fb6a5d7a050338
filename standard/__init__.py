"""The unified data standard: canonical datasets, the envelope, code tables and check algorithms."""

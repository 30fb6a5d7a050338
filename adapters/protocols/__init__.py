"""The protocol plug-ins: push endpoints, pollers, senders and the outbox, one module each.

Each registers under the entry-point group `jghub.adapters` (see `adapters.registry`), exactly
as a third party's plug-in would; the pipelines beside this folder never name one of them.
"""

"""Simulators of the external systems: real HTTP/SOAP servers and clients on loopback.

Each simulated system speaks its own protocol, as its system folder's description and the hub's
systems configuration say: it pushes realistic traffic (grown from its samples by
`hub.simulators.traffic`), receives what the hub delivers and records it, serves pull APIs for the
hub's pollers, or pulls its outbox. `jghub simulate SYSTEM...` runs them standalone.
"""

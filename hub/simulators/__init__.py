"""Simulators of the external systems: real HTTP/SOAP servers and clients on loopback.

Each simulated system speaks its own protocol, as its system folder's description and the
systems configuration say:

- `traffic`: realistic payloads grown from a system's samples (fresh valid codes, spoiled
  records, its hostile samples), judged by its own mapping;
- `clients`: a system pushing to the hub (REST with keys or signed app keys, XML, SOAP via zeep)
  and pulling its outbox;
- `targets`: a system receiving what the hub delivers (REST or its own SOAP service), recording
  it, failing or slowing down on demand;
- `sources`: a pull-only system's paged API that the hub's pollers read;
- `landscape`: every system wired to simulators on this machine; `demo`: `jghub demo`;
- `server`: the loopback uvicorn server they all run on.

`jghub simulate SYSTEM...` runs them standalone.
"""

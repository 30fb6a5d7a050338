"""How bytes come into the hub and go out of it: the two pipelines side by side.

- `ingress`: admit, translate, route, publish with confirms (every push endpoint and poller);
- `egress`: decode, render, deliver, settle (every target's queue);

with what they share (`security`, `routing`, `backpressure`, `delivery`, `breaker`, `errors`),
the plug-in contract (`base`, `registry`) and the protocol plug-ins in `protocols/`.
"""

"""A consumer in its own process that takes one delivery and never settles it (to be killed).

Usage: python consumer_process.py URL TOPOLOGY_JSON TARGET OPTIONS_JSON
Prints "holding <message id>" once its handler has the delivery, then sleeps until killed.
"""

from __future__ import annotations

import json
import sys
import threading
import time

import bus
from bus import Delivery, Topology


def main() -> None:
    url, topology_json, target, options_json = sys.argv[1:5]
    broker = bus.connect(url, **json.loads(options_json))
    broker.declare(Topology.model_validate_json(topology_json))

    def hold(delivery: Delivery) -> None:
        print(f"holding {delivery.message.id}", flush=True)
        while True:
            time.sleep(60)

    broker.consume(target, hold, stop=threading.Event(), prefetch=1)


if __name__ == "__main__":
    main()

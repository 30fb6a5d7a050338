"""A bus for poller tests: the topology of a systems configuration, and a queue drained."""

from __future__ import annotations

import threading
import time
import uuid

import bus
from bus import Broker, Delivery, Message
from hub.systems import SystemsConfig


class Bus:
    """A namespace of its own on the bus at `url`, with the topology of `config`."""

    def __init__(self, url: str, config: SystemsConfig) -> None:
        self.url = url
        self.namespace = f"test-poller-{uuid.uuid4().hex[:10]}"
        self.topology = config.topology(self.namespace)
        self.broker: Broker = bus.connect(url)
        self.broker.declare(self.topology)

    def drain(self, target: str = "national") -> list[Message]:
        """Every message waiting in the target's queue, consumed and acknowledged."""
        got: list[Message] = []
        stop = threading.Event()
        last = [time.monotonic()]

        def handle(delivery: Delivery) -> None:
            got.append(delivery.message)
            last[0] = time.monotonic()
            delivery.ack()

        consumer = threading.Thread(
            target=self.broker.consume, args=(target, handle), kwargs={"stop": stop}
        )
        consumer.start()
        while time.monotonic() - last[0] < 0.5:
            time.sleep(0.05)
        stop.set()
        consumer.join(timeout=10)
        return got

    def close(self) -> None:
        if self.url.startswith("amqp"):
            self.broker.delete_topology(self.topology)
        self.broker.close()

"""The naive reference's delivery (bench/e2e.py): one pika consumer rendering each record for the
target and POSTing it with one synchronous HTTP client.

    python bench/naive_consumer.py QUEUE TARGET_URL     (JGHUB_BENCH_AMQP_URL names the broker)

What a team writes first next to naive_publisher: a BlockingConnection consuming the queue with
prefetch 100; for each message the envelope rebuilt from its properties and body, rendered with
national's penalty_record mapping (the hub's own engine), POSTed with one httpx.Client, and acked
once the target answered 2xx (nacked back to the queue otherwise). One record at a time: no
concurrency, retry policy, breaker or journal. Stops on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

# Run as a script, bench/ comes first on sys.path, where bench/bus.py would shadow the `bus`
# package the mappings' imports reach.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import httpx  # noqa: E402
import pika  # noqa: E402

from mappings import SYSTEMS_ROOT, load_system  # noqa: E402
from standard.envelope import Envelope  # noqa: E402

URL = os.environ.get("JGHUB_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def main(argv: list[str]) -> int:
    queue, target_url = argv
    national = load_system(SYSTEMS_ROOT / "national")
    connection = pika.BlockingConnection(pika.URLParameters(URL))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=100)
    client = httpx.Client(timeout=30)

    def deliver(ch: Any, method: Any, properties: Any, body: bytes) -> None:
        envelope = Envelope.from_amqp(properties, body)
        answer = client.post(
            target_url,
            content=national.render("penalty_record", envelope),
            headers={"Content-Type": "application/json", "Idempotency-Key": envelope.id},
        )
        if answer.is_success:
            ch.basic_ack(method.delivery_tag)
        else:
            ch.basic_nack(method.delivery_tag, requeue=True)

    signal.signal(signal.SIGTERM, lambda *_: channel.stop_consuming())
    channel.basic_consume(queue, deliver)
    channel.start_consuming()
    connection.close()
    client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""The naive reference's ingress (bench/e2e.py): a FastAPI endpoint translating each payload with
the hub's mappings and publishing each record with a BlockingConnection confirm.

    uvicorn naive_publisher:app --app-dir bench --port 8090
    JGHUB_BENCH_AMQP_URL and JGHUB_BENCH_NAIVE_EXCHANGE name the bus.

What a team writes first, doing the hub's work plainly: POST /push/{system}/{message_type} takes
the body, translates it with that system's mapping (`mappings.load_system`, the hub's own engine,
so a faster engine speeds up both sides), publishes each envelope persistent and mandatory under
the hub's routing key through a pika BlockingConnection in confirm mode, one after the other,
each confirm awaited, and answers {"accepted": n, "rejected": m}. No authentication, journal,
metrics, stage checks or repeats. FastAPI runs the sync work in its thread pool; a
BlockingConnection belongs to one thread, so each pool thread opens its own (the fairest naive
version: requests in flight do not queue on one connection's lock).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path

# uvicorn's --app-dir puts bench/ first on sys.path, where bench/bus.py would shadow the `bus`
# package the mappings' imports reach.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import pika  # noqa: E402
from fastapi import FastAPI, Request, Response  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from pika.adapters.blocking_connection import BlockingChannel  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402

from adapters.routing import routing_key  # noqa: E402
from mappings import SYSTEMS_ROOT, SystemMappings, load_system  # noqa: E402
from standard.envelope import Envelope  # noqa: E402

URL = os.environ.get("JGHUB_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
EXCHANGE = os.environ.get("JGHUB_BENCH_NAIVE_EXCHANGE", "naive.canonical")

app = FastAPI(title="naive publisher")
_local = threading.local()


@cache
def _system(system_id: str) -> SystemMappings:
    return load_system(SYSTEMS_ROOT / system_id)


def _channel() -> BlockingChannel:
    channel: BlockingChannel | None = getattr(_local, "channel", None)
    if channel is None or channel.is_closed:
        connection = pika.BlockingConnection(pika.URLParameters(URL))
        channel = connection.channel()
        channel.confirm_delivery()
        _local.channel = channel
    return channel


@app.post("/push/{system_id}/{message_type}")
async def push(system_id: str, message_type: str, request: Request) -> Response:
    """Translate and publish; 200 with the counts once every record is confirmed, 503 when the
    broker refused or returned one."""
    body = await request.body()
    try:
        accepted, rejected = await run_in_threadpool(_publish, system_id, message_type, body)
    except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as error:
        return Response(f"not confirmed: {error}", status_code=503)
    return JSONResponse({"accepted": accepted, "rejected": rejected})


def _publish(system_id: str, message_type: str, body: bytes) -> tuple[int, int]:
    translation = _system(system_id).translate(message_type, body)
    try:
        _publish_each(translation.envelopes, system_id)
    except pika.exceptions.AMQPConnectionError:
        # A BlockingConnection answers the broker's heartbeats only while it is used, so the
        # broker drops one a pool thread left idle: publish again on a new one.
        _local.channel = None
        _publish_each(translation.envelopes, system_id)
    return len(translation.envelopes), len(translation.errors)


def _publish_each(envelopes: Sequence[Envelope], system_id: str) -> None:
    channel = _channel()
    for envelope in envelopes:
        properties, data = envelope.to_amqp()
        channel.basic_publish(
            EXCHANGE,
            routing_key(envelope, system_id),
            data,
            pika.BasicProperties(
                content_type=properties["content_type"],
                headers=properties["headers"],
                message_id=properties["message_id"],
                delivery_mode=2,
            ),
            mandatory=True,
        )


@app.get("/ready")
def ready() -> dict[str, bool]:
    """Ready once a channel to the broker opens."""
    _channel()
    return {"ready": True}

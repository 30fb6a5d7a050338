"""The naive reference of bench/e2e.py: a FastAPI endpoint publishing each request with confirms.

    uvicorn naive_publisher:app --app-dir bench --port 8090
    JGHUB_BENCH_AMQP_URL, JGHUB_BENCH_NAIVE_EXCHANGE, JGHUB_BENCH_NAIVE_ROUTING_KEY name the bus.

What a team writes first: POST /publish takes the body, publishes it persistent and mandatory
through a pika BlockingConnection in confirm mode, and answers once the broker confirmed it.
FastAPI runs the sync endpoint in its thread pool; a BlockingConnection belongs to one thread, so
each pool thread opens its own (the fairest naive version: requests in flight do not queue on one
connection's lock).
"""

from __future__ import annotations

import os
import threading

import pika
from fastapi import FastAPI, Request, Response
from pika.adapters.blocking_connection import BlockingChannel
from starlette.concurrency import run_in_threadpool

URL = os.environ.get("JGHUB_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
EXCHANGE = os.environ.get("JGHUB_BENCH_NAIVE_EXCHANGE", "naive.canonical")
ROUTING_KEY = os.environ.get("JGHUB_BENCH_NAIVE_ROUTING_KEY", "penalty_case.330106.naive")
PROPERTIES = pika.BasicProperties(content_type="application/xml", delivery_mode=2)

app = FastAPI(title="naive publisher")
_local = threading.local()


def _channel() -> BlockingChannel:
    channel: BlockingChannel | None = getattr(_local, "channel", None)
    if channel is None or channel.is_closed:
        connection = pika.BlockingConnection(pika.URLParameters(URL))
        channel = connection.channel()
        channel.confirm_delivery()
        _local.channel = channel
    return channel


@app.post("/publish")
async def publish(request: Request) -> Response:
    """Publish the body; 200 once confirmed, 503 when the broker refused or returned it."""
    body = await request.body()
    try:
        await run_in_threadpool(_publish, body)
    except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as error:
        return Response(f"not confirmed: {error}", status_code=503)
    return Response(b'{"status":"accepted"}', media_type="application/json")


def _publish(body: bytes) -> None:
    _channel().basic_publish(EXCHANGE, ROUTING_KEY, body, PROPERTIES, mandatory=True)


@app.get("/ready")
def ready() -> dict[str, bool]:
    """Ready once a channel to the broker opens."""
    _channel()
    return {"ready": True}

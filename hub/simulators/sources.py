"""Simulated pull-only systems: JSON APIs paged by change time, as the hub's pollers read them.

A `SimulatedSource` is built from a system's `rest_poller` channels, so it answers where and how
each poller asks: the list endpoint at the channel's `url` with its since/until/page/page-size
parameters, pages shaped like the system's sample page (records at `records_path`, the count at
`total_path`), change times written in the source's notation, an optional token endpoint
exchanging client credentials for a token, and error answers (HTTP 200 with an error code) when
the token is wrong. Records are grown from the samples (`hub.simulators.traffic`), each given
its own change time a second apart, so paging by change time is exercised; every record is
judged once by the system's mapping, so the source knows how many the hub must accept. A list a
system keeps rather than grows (the demo's catalogue and certificates, `hub.simulators.roster`)
is served as given instead (`fixed`): each record written from its canonical values into a
template record of the folder, keeping its own id.

`served` tracks which records a poller has fetched; `add(n)` adds newer records while it runs.
`reads` logs every page asked for: by whom (the API key it came with; `api_keys` lets several
hub hosts, each with a key of its own, read one source and be told apart), when, and which
records it held that the request had not already seen (those changed after its "since").
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import jmespath
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from adapters.protocols.poller import TimeFormat
from adapters.protocols.rest_poller import RestPollerOptions
from hub.simulators.traffic import SystemTraffic
from mappings import PayloadRejected, SystemMappings, value_at
from systems import ChannelConfig, SystemConfig


@dataclass
class _Record:
    time: datetime
    record_id: str
    raw: Any
    valid: bool


@dataclass(frozen=True)
class SourceRead:
    """One page a poller asked for.

    Attributes:
      reader: the API key it came with ("" without one).
      message_type: the channel's message type.
      page: the page number asked for.
      new: ids of the records in the page changed after the request's "since" — the
        records the page told the poller for the first time, if its cursor was right.
      at: when it was answered (time.monotonic()).
    """

    reader: str
    message_type: str
    page: int
    new: tuple[str, ...]
    at: float


@dataclass
class _Feed:
    """The records of one poller channel."""

    channel: ChannelConfig
    options: RestPollerOptions
    traffic: SystemTraffic
    template: Any
    query_time: TimeFormat
    record_time: TimeFormat
    records: list[_Record] = field(default_factory=list)
    served: set[str] = field(default_factory=set)


class SimulatedSource:
    """One pull-only system's API (see the module docstring).

    Parameters:
      system: the system; its `rest_poller` channels say what to serve.
      mappings: the system's compiled mappings (to grow and judge records).
      records: records per channel at the start.
      invalid_share: share of records spoiled on purpose.
      seed: makes the generated records repeatable.
      api_keys: the keys the list endpoint accepts, for a channel with `api_key_env`; None:
        the one in that environment variable.
      silent: message types it grows no records for: their pages stay empty (a department's
        feedback, which it gives only on what it received).
      fixed: message type → the records it serves, as canonical values (field → value), in
        place of grown ones; each is written on a copy of the first template record like it
        (same status), keeps its own id, and is served once.
    """

    def __init__(
        self,
        system: SystemConfig,
        mappings: SystemMappings,
        *,
        records: int = 20,
        invalid_share: float = 0.0,
        seed: int = 0,
        api_keys: Collection[str] | None = None,
        silent: Collection[str] = (),
        fixed: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    ) -> None:
        self.system = system
        self.fixed = dict(fixed or {})
        self.silent = frozenset(silent) | frozenset(self.fixed)
        self.api_keys = None if api_keys is None else frozenset(api_keys)
        self.reads: list[SourceRead] = []
        self.mappings = mappings
        self.invalid_share = invalid_share
        self._lock = threading.Lock()
        self._token = secrets.token_hex(12)
        self._serial = 100_000
        self._clock = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
        self.feeds: dict[str, _Feed] = {}
        addresses = set()
        self.app = FastAPI(title=f"simulated {system.id} API", docs_url=None, redoc_url=None)
        for channel in system.inbound:
            if channel.adapter != "rest_poller":
                continue
            options = RestPollerOptions.model_validate(channel.options)
            parts = urlsplit(options.url)
            addresses.add((parts.hostname or "127.0.0.1", parts.port or 80))
            traffic = SystemTraffic(mappings, channel.message_type, seed=seed)
            sample = next((mappings.folder / "samples" / channel.message_type).glob("valid*.json"))
            feed = _Feed(
                channel,
                options,
                traffic,
                json.loads(sample.read_text(encoding="utf-8")),
                TimeFormat(options.time_format, options.time_zone),
                TimeFormat(options.record_time_format or options.time_format, options.time_zone),
            )
            self.feeds[channel.message_type] = feed
            self._list_route(feed, parts.path)
            if options.token is not None:
                self._token_route(options)
        if not self.feeds:
            raise ValueError(f"system {system.id} has no rest_poller channel to serve")
        if len(addresses) != 1:
            raise ValueError(
                f"system {system.id}: its pollers' URLs name several hosts/ports {addresses}; "
                "one simulated source serves one address"
            )
        self.host, self.port = addresses.pop()
        for message_type, wanted in self.fixed.items():
            self._serve_fixed(self.feeds[message_type], wanted)
        self.add(records)

    # ------------------------------------------------------------------ records

    def add(self, count: int) -> None:
        """Add `count` new records to every feed but the silent ones, changed after every
        record so far."""
        if count <= 0:
            return
        for feed in self.feeds.values():
            if feed.channel.message_type in self.silent:
                continue
            payload = feed.traffic.batch(count, invalid_share=self.invalid_share)
            # A record whose id is its key (the national catalogue's code) keeps the varied key.
            renumber = feed.options.record_id_path != feed.traffic.key_path
            self._take(feed, _records_of(feed, payload.body), renumber=renumber)

    def _serve_fixed(self, feed: _Feed, wanted: Sequence[Mapping[str, Any]]) -> None:
        for values in wanted:
            like = [{"status": values["status"]}] if "status" in values else [{}]
            payload = feed.traffic.record(values, like=[*like, {}])
            self._take(feed, _records_of(feed, payload.body), renumber=False)

    def _take(self, feed: _Feed, found: list[Any], *, renumber: bool) -> None:
        """Serve `found` (raw records), each changed a second after the last record so far;
        `renumber`: given the source's next row id, as a database would."""
        with self._lock:
            for item in found:
                self._clock += timedelta(seconds=1)
                _put_path(item, feed.options.record_time_path, feed.record_time.format(self._clock))
                record_id: Any = jmespath.search(feed.options.record_id_path, item)
                if renumber:
                    self._serial += 1
                    record_id = self._serial if isinstance(record_id, int) else str(self._serial)
                    _put_path(item, feed.options.record_id_path, record_id)
                feed.records.append(
                    _Record(self._clock, str(record_id), item, self._judge(feed, item))
                )

    def _judge(self, feed: _Feed, item: Any) -> bool:
        page = copy.deepcopy(feed.template)
        _put(page, feed.options.records_path, [item])
        body = json.dumps(page, ensure_ascii=False).encode("utf-8")
        try:
            result = self.mappings.translate(feed.channel.message_type, body)
        except PayloadRejected:
            return False
        return bool(result.envelopes) and not result.errors

    def counts(self) -> dict[str, int]:
        """records (generated), served (fetched by a poller), valid (the mapping accepts)."""
        with self._lock:
            records = [r for feed in self.feeds.values() for r in feed.records]
            served = sum(len(feed.served) for feed in self.feeds.values())
        return {
            "records": len(records),
            "served": served,
            "valid": sum(r.valid for r in records),
            "served_valid": sum(
                r.valid
                for feed in self.feeds.values()
                for r in feed.records
                if r.record_id in feed.served
            ),
        }

    # ------------------------------------------------------------------ HTTP

    def _authorised(self, feed: _Feed, request: Request) -> bool:
        token = feed.options.token
        if token is not None:
            return request.headers.get(token.header) == f"{token.prefix}{self._token}"
        if feed.options.api_key_env:
            given = request.headers.get(feed.options.api_key_header)
            if self.api_keys is not None:
                return given in self.api_keys
            return given == os.environ.get(feed.options.api_key_env)
        return True

    def _list_route(self, feed: _Feed, path: str) -> None:
        options = feed.options

        async def page(request: Request) -> JSONResponse:
            if not self._authorised(feed, request):
                return JSONResponse(
                    {"code": 401, "msg": "token invalid or expired", "result": None}
                )
            query = request.query_params
            try:
                since = feed.query_time.parse(query.get(options.since_param, ""))
                until = (
                    feed.query_time.parse(query[options.until_param])
                    if options.until_param and options.until_param in query
                    else None
                )
                number = int(query.get(options.page_param, str(options.first_page)))
                size = int(query.get(options.page_size_param, "50"))
            except (ValueError, KeyError) as error:
                return JSONResponse({"code": 400, "msg": f"bad query: {error}", "result": None})
            with self._lock:
                matching = sorted(
                    (
                        r
                        for r in feed.records
                        if r.time >= since and (until is None or r.time <= until)
                    ),
                    key=lambda r: (r.time, _numeric(r.record_id)),
                )
                start = (number - options.first_page) * size
                chosen = matching[start : start + size] if start >= 0 else []
                feed.served.update(r.record_id for r in chosen)
                self.reads.append(
                    SourceRead(
                        reader=request.headers.get(options.api_key_header, ""),
                        message_type=feed.channel.message_type,
                        page=number,
                        new=tuple(r.record_id for r in chosen if r.time > since),
                        at=time.monotonic(),
                    )
                )
            document = copy.deepcopy(feed.template)
            _put(document, options.records_path, [r.raw for r in chosen])
            if options.total_path and _is_dotted(options.total_path):
                _put(document, options.total_path, len(matching))
            for name, value in (("pageNo", number), ("pageSize", size)):
                parent_path = options.records_path.rpartition(".")[0]
                parent = value_at(document, parent_path) if parent_path else document
                if isinstance(parent, dict) and name in parent:
                    parent[name] = value
            return JSONResponse(document)

        self.app.add_api_route(path, page, methods=["GET"], include_in_schema=False)

    def _token_route(self, options: RestPollerOptions) -> None:
        token = options.token
        assert token is not None
        path = urlsplit(token.url).path

        async def issue(request: Request) -> JSONResponse:
            given = await request.json()
            for name, variable in token.secret_fields.items():
                if not isinstance(given, dict) or given.get(name) != os.environ.get(variable):
                    return JSONResponse({"code": 401, "msg": "bad client credentials"})
            answer: dict[str, Any] = {"code": 200, "msg": "操作成功"}
            _put(answer, token.token_path, self._token)
            if token.expires_path:
                _put(answer, token.expires_path, 7200)
            return JSONResponse(answer)

        if not any(getattr(r, "path", None) == path for r in self.app.routes):
            self.app.add_api_route(path, issue, methods=["POST"], include_in_schema=False)


def _records_of(feed: _Feed, body: bytes) -> list[Any]:
    """The raw records of a payload the feed's traffic generated."""
    found = value_at(json.loads(body), feed.options.records_path)
    return found if isinstance(found, list) else []


def _numeric(value: str) -> tuple[int, int | str]:
    return (0, int(value)) if value.isdigit() else (1, value)


def _is_dotted(path: str) -> bool:
    return all(part.isidentifier() for part in path.split("."))


def _put(document: Any, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        child = document.get(key)
        if not isinstance(child, dict):
            child = document[key] = {}
        document = child
    document[last] = value


def _put_path(item: Any, path: str, value: Any) -> None:
    if isinstance(item, dict) and _is_dotted(path):
        _put(item, path, value)

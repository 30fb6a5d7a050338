"""The REST poller against a real loopback pull API (the emergency-penalty system's shape).

The source pages penalty cases by update time (inclusive begin), with a token; records go
through the real ingress onto the bus (embedded and RabbitMQ), and the cursor lives in data_dir.
"""

from __future__ import annotations

import copy
import functools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from broker_support import RABBITMQ_URL, require_rabbitmq
from poller_bus import Bus
from store_support import embedded_store

from adapters.base import AdapterContext
from adapters.ingress import Ingress
from adapters.protocols.poller import CursorStore, PollerLease, SourceUnavailable
from adapters.protocols.rest_poller import RestPoller
from bus import Broker, Message, Outgoing
from hub.settings import HubSettings
from hub.systems import SystemsConfig, parse_systems
from hub.worker import Worker
from mappings import SYSTEMS_ROOT, SystemMappings, load_all
from monitor import metrics

SAMPLE = SYSTEMS_ROOT / "emergency-penalty/samples/case_page/valid-page.json"
TEMPLATE = json.loads(SAMPLE.read_text(encoding="utf-8"))["result"]["records"][0]
TOKEN = "tok-" + uuid.uuid4().hex
START = datetime(2026, 3, 5, 10, 0, 0)


@functools.cache
def folders() -> dict[str, SystemMappings]:
    """The shipped mapping folders, compiled once for the whole module."""
    return load_all()


def case(number: int, updated: datetime) -> dict[str, Any]:
    """A penalty case of the sample's shape with its own id, case number and update time."""
    record = copy.deepcopy(TEMPLATE)
    stamp = updated.strftime("%Y-%m-%d %H:%M:%S")
    record.update(id=20000 + number, caseNo=f"330603YJ2026{number:06d}")
    record.update(createTime=stamp, updateTime=stamp)
    return record


class PullSource:
    """The department's pull API: a token endpoint and GET pages of cases by update time."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.requests: list[dict[str, str]] = []
        self.fail_next = 0
        self.answer_next: bytes | None = None
        """A body the next page request gets as it is (a hostile or broken answer)."""
        self.token_requests = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes

            def log_message(self, format: str, *args: object) -> None:
                return

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with owner._lock:
                    owner.token_requests += 1
                ok = body == {"clientId": "jghub", "clientSecret": "s3cret"}
                answer = {"code": 200, "result": {"accessToken": TOKEN, "expiresIn": 7200}}
                self._json(answer if ok else {"code": 401, "msg": "bad client", "result": None})

            def do_GET(self) -> None:
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                with owner._lock:
                    owner.requests.append(query)
                    failing = owner.fail_next > 0
                    owner.fail_next -= 1 if failing else 0
                    records = list(owner.records)
                    raw, owner.answer_next = owner.answer_next, None
                if raw is not None:
                    self._send(200, raw, "application/json")
                    return
                if failing:
                    self._send(500, b"<html>500 Internal Server Error</html>", "text/html")
                    return
                if self.headers.get("X-Access-Token") != TOKEN:
                    self._json({"code": 401, "msg": "token已过期，请重新获取", "result": None})
                    return
                begin = query["updateTimeBegin"]
                chosen = sorted(
                    (r for r in records if r["updateTime"] >= begin),
                    key=lambda r: (r["updateTime"], r["id"]),
                )
                number, size = int(query["pageNo"]), int(query["pageSize"])
                page = chosen[(number - 1) * size : number * size]
                result = {"total": len(chosen), "pageNo": number, "pageSize": size}
                self._json({"code": 200, "msg": "操作成功", "result": {**result, "records": page}})

            def _json(self, document: Any) -> None:
                self._send(
                    200, json.dumps(document, ensure_ascii=False).encode(), "application/json"
                )

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, *records: dict[str, Any]) -> None:
        with self._lock:
            self.records.extend(records)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def systems(source: PullSource, **poller: Any) -> SystemsConfig:
    options = {
        "url": f"{source.base}/openapi/v1/punish/cases",
        "since_param": "updateTimeBegin",
        "until_param": "updateTimeEnd",
        "page_param": "pageNo",
        "page_size_param": "pageSize",
        "page_size": 4,
        "time_format": "yyyy-MM-dd HH:mm:ss",
        "records_path": "result.records",
        "total_path": "result.total",
        "record_time_path": "updateTime",
        "record_id_path": "id",
        "answer_check": {"path": "code", "success": [200], "message_path": "msg"},
        "token": {
            "url": f"{source.base}/openapi/v1/auth/token",
            "fields": {"clientId": "jghub"},
            "secret_fields": {"clientSecret": "JGHUB_TEST_EMERGENCY_SECRET"},
            "header": "X-Access-Token",
        },
        "interval_s": 0.2,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
        **poller,
    }
    return parse_systems(
        {
            "systems": [
                {
                    "id": "emergency-penalty",
                    "name_zh": "省应急管理厅安全生产行政执法系统",
                    "auth": {"scheme": "api_key", "key_env": "JGHUB_TEST_UNUSED"},
                    "inbound": [
                        {"adapter": "rest_poller", "message_type": "case_page", "options": options}
                    ],
                },
                {
                    "id": "national",
                    "name_zh": "国家互联网+监管系统",
                    "mapping": "grassroots-platform",
                    "auth": {"scheme": "api_key", "key_env": "JGHUB_TEST_UNUSED"},
                    "outbound": {"adapter": "outbox", "render": {"penalty_case": "cloudevent"}},
                    "routes": ["penalty_case.#"],
                },
            ]
        }
    )


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JGHUB_TEST_EMERGENCY_SECRET", "s3cret")


@pytest.fixture
def source() -> Iterator[PullSource]:
    running = PullSource()
    yield running
    running.close()


@pytest.fixture(params=["embedded", "rabbitmq"])
def bus_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "rabbitmq":
        require_rabbitmq()
        return RABBITMQ_URL
    return f"sqlite:///{tmp_path / 'bus.sqlite3'}"


def poller_of(config: SystemsConfig, broker: Broker, data_dir: Path) -> RestPoller:
    mappings = config.bind_mappings(folders())
    system = config.system("emergency-penalty")
    context = AdapterContext(
        system=system,
        data_dir=data_dir,
        ingress=Ingress(broker, mappings),
        channel=system.inbound[0],
        store=embedded_store(data_dir),
    )
    options = RestPoller.Options.model_validate(system.inbound[0].options)
    return RestPoller(options, context)


def case_numbers(messages: list[Message]) -> list[str]:
    return sorted(str(m.headers["cloudEvents_subject"]) for m in messages)


def test_restart_neither_skips_nor_repeats(
    source: PullSource, bus_url: str, tmp_path: Path
) -> None:
    # 10 cases, with runs of equal update times that straddle the 4-record pages.
    times = [START + timedelta(minutes=m) for m in (0, 1, 1, 1, 1, 1, 2, 3, 3, 4)]
    source.add(*(case(n, t) for n, t in enumerate(times)))
    config = systems(source)
    wire = Bus(bus_url, config)
    try:
        first = poller_of(config, wire.broker, tmp_path)
        source.fail_next = 0
        # The source breaks after two pages: what was handed over stays, the cursor says where.
        original_fetch = first.fetch
        pages = [0]

        def fetch_then_fail(since: datetime, after: Any) -> Any:
            pages[0] += 1
            if pages[0] > 2:
                raise SourceUnavailable("the source went away")
            return original_fetch(since, after)

        first.fetch = fetch_then_fail  # type: ignore[method-assign]
        with pytest.raises(SourceUnavailable):
            first.poll_once()
        first.close()
        cursor = CursorStore(
            embedded_store(tmp_path), tmp_path, "emergency-penalty", "case_page"
        ).load()
        assert cursor is not None and cursor.record_id != ""
        handed_first = case_numbers(wire.drain())
        assert 0 < len(handed_first) < 10

        # A new poller (a restarted worker) reads the cursor and goes on.
        second = poller_of(config, wire.broker, tmp_path)
        second.poll_once()
        handed_second = case_numbers(wire.drain())
        assert sorted(handed_first + handed_second) == [f"330603YJ2026{n:06d}" for n in range(10)]
        assert not set(handed_first) & set(handed_second)

        # New cases, one at the cursor's very time with a larger id: all of them, once.
        latest = times[-1]
        source.add(case(10, latest), case(11, latest + timedelta(seconds=1)))
        second.poll_once()
        assert case_numbers(wire.drain()) == ["330603YJ2026000010", "330603YJ2026000011"]
        assert second.poll_once() == 0  # nothing new: nothing handed over
        assert wire.drain() == []
        second.close()
    finally:
        wire.close()


def test_the_query_carries_the_cursor_time_and_the_token(
    source: PullSource, tmp_path: Path
) -> None:
    source.add(case(1, START), case(2, START + timedelta(hours=1)))
    config = systems(source)
    wire = Bus(f"sqlite:///{tmp_path / 'bus.sqlite3'}", config)
    try:
        poller = poller_of(config, wire.broker, tmp_path)
        assert poller.poll_once() == 2
        assert source.requests[0]["updateTimeBegin"] == "1970-01-01 08:00:00"
        assert source.requests[0]["pageNo"] == "1" and source.requests[0]["pageSize"] == "4"
        poller.poll_once()
        assert source.requests[-1]["updateTimeBegin"] == "2026-03-05 11:00:00"
        assert source.token_requests == 1  # the token is reused until it expires
        poller.close()
    finally:
        wire.close()


def test_a_failing_source_is_retried_with_backoff_and_a_refused_token_fetched_again(
    source: PullSource, tmp_path: Path
) -> None:
    source.add(*(case(n, START + timedelta(minutes=n)) for n in range(6)))
    config = systems(source)
    wire = Bus(f"sqlite:///{tmp_path / 'bus.sqlite3'}", config)
    try:
        poller = poller_of(config, wire.broker, tmp_path)
        source.fail_next = 3
        stop = threading.Event()
        runner = threading.Thread(target=poller.run, args=(stop,))
        started = time.monotonic()
        runner.start()
        deadline = time.monotonic() + 15
        got: list[Message] = []
        while len(got) < 6 and time.monotonic() < deadline:
            got += wire.drain()
        stop.set()
        runner.join(timeout=10)
        assert case_numbers(got) == [f"330603YJ2026{n:06d}" for n in range(6)]
        assert time.monotonic() - started >= 0.05 + 0.1  # it waited between failed polls
        poller._token = ("expired-token", time.monotonic() + 3600)  # the source refuses it
        with pytest.raises(SourceUnavailable, match="token已过期"):
            poller.poll_once()
        assert poller.poll_once() == 0  # a new token was fetched
        assert source.token_requests == 2
        poller.close()
    finally:
        wire.close()


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (b'{"code": 200, "result": {"records": [{"id": 1' + b"9" * 5000 + b"}]}}", "integer"),
        (b"[" * 100_000 + b"]" * 100_000, "nest"),
        (b'{"code": 200, "result": {"records": [{"id": "\xff"}]}}', "not JSON"),
    ],
    ids=["a 5,000-digit number", "100,000 nested arrays", "not UTF-8"],
)
def test_a_source_answer_the_hub_cannot_read_is_a_source_failure_not_a_crash(
    source: PullSource, tmp_path: Path, answer: bytes, said: str
) -> None:
    source.add(*(case(n, START + timedelta(minutes=n)) for n in range(2)))
    config = systems(source)
    wire = Bus(f"sqlite:///{tmp_path / 'bus.sqlite3'}", config)
    try:
        poller = poller_of(config, wire.broker, tmp_path)
        source.answer_next = answer
        with pytest.raises(SourceUnavailable, match=said) as failed:
            poller.poll_once()
        assert len(str(failed.value)) < 1000  # an excerpt of the answer, not all of it
        assert poller.poll_once() == 2  # the next answer is read as usual
        poller.close()
    finally:
        wire.close()


def cursors_of(data_dir: Path) -> CursorStore:
    """The cursor of emergency-penalty's case pages, in the embedded store of `data_dir`."""
    return CursorStore(embedded_store(data_dir), data_dir, "emergency-penalty", "case_page")


def test_a_second_poller_of_the_channel_waits_for_the_first(tmp_path: Path) -> None:
    def lease() -> PollerLease:
        store = embedded_store(tmp_path)
        return PollerLease(store, "emergency-penalty", "case_page", period_s=0.3)

    stop = threading.Event()
    first = lease()
    with first.held(stop) as halt:
        assert halt is not None
        other = threading.Event()
        threading.Timer(1.0, other.set).start()  # past several of the first's renewals
        with lease().held(other) as second:
            assert second is None  # gave up at its stop request, never polled
        assert not halt.is_set() and not first.lost
    # Released at the end of the block: the next one takes it at once.
    with lease().held(threading.Event()) as third:
        assert third is not None


def test_the_worker_runs_the_configured_pollers(source: PullSource, tmp_path: Path) -> None:
    source.add(*(case(n, START + timedelta(minutes=n)) for n in range(5)))
    config = systems(source)
    url = f"sqlite:///{tmp_path / 'bus.sqlite3'}"
    wire = Bus(url, config)
    settings = HubSettings(data_dir=tmp_path, namespace=wire.namespace)
    worker = Worker(settings, systems=config, targets=[], pollers=True, mapping_folders=folders())
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop,))
    runner.start()
    try:
        deadline = time.monotonic() + 15
        got: list[Message] = []
        while len(got) < 5 and time.monotonic() < deadline:
            got += wire.drain()
        assert len(got) == 5
    finally:
        stop.set()
        runner.join(timeout=15)
        wire.close()
    assert not runner.is_alive()


def test_the_worker_holds_its_pollers_back_while_a_target_is_full(
    source: PullSource, tmp_path: Path
) -> None:
    source.add(*(case(n, START + timedelta(minutes=n)) for n in range(5)))
    config = systems(source)
    wire = Bus(f"sqlite:///{tmp_path / 'bus.sqlite3'}", config)
    # Three messages already wait for the national system, above its mark of two.
    wire.broker.publish_many([Outgoing("penalty_case.330100.elsewhere", b"x") for _ in range(3)])
    settings = HubSettings(
        data_dir=tmp_path,
        namespace=wire.namespace,
        backpressure_max_ready=2,
        backpressure_refresh_s=0.05,
    )
    worker = Worker(settings, systems=config, targets=[], pollers=True, mapping_folders=folders())
    refused_before = _held_back()
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop,))
    runner.start()
    try:
        deadline = time.monotonic() + 15
        while _held_back() == refused_before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _held_back() > refused_before  # the poller's page was refused...
        assert wire.broker.depth("national") == 3  # ...and nothing of it was published
        assert cursors_of(tmp_path).load() is None
        got = wire.drain()  # the target catches up: the poller goes on where it was
        deadline = time.monotonic() + 15
        while len(got) < 8 and time.monotonic() < deadline:
            got += wire.drain()
        assert len(got) == 8
        assert len(case_numbers([m for m in got if m.body != b"x"])) == 5
    finally:
        stop.set()
        runner.join(timeout=15)
        wire.close()


def _held_back() -> float:
    return metrics.sample_total(
        "jghub_backpressure_refused_total", system="emergency-penalty", target="national"
    )


# ------------------------------------------------------------- a cursor-paged API (hrss-penalty)

HRSS = json.loads(
    (SYSTEMS_ROOT / "hrss-penalty/samples/penalty_feed/valid-page.json").read_text(encoding="utf-8")
)
HRSS_TEMPLATE = HRSS["items"][0]
EPOCH_START = 1775721600  # epoch seconds, as the department writes every time


def penalty(number: int, updated: int) -> dict[str, Any]:
    item = copy.deepcopy(HRSS_TEMPLATE)
    item.update(id=str(60000 + number), case_no=f"330326RS2026{number:06d}", updated_at=updated)
    return item


class CursorSource:
    """hrss-penalty's API: OAuth2 form token, `since` in epoch seconds, next_cursor paging."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.queries: list[dict[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:
                return

            def do_POST(self) -> None:
                form = parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
                if form.get("client_secret") != ["hrss-secret"]:
                    self._json(401, {"error": "invalid_client"})
                    return
                self._json(200, {"access_token": "hrss-token", "expires_in": 3600})

            def do_GET(self) -> None:
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                owner.queries.append(query)
                if self.headers.get("Authorization") != "Bearer hrss-token":
                    self._json(401, {"error": "invalid_token"})
                    return
                chosen = sorted(
                    (i for i in owner.items if i["updated_at"] >= int(query["since"])),
                    key=lambda i: (i["updated_at"], int(i["id"])),
                )
                start, limit = int(query.get("cursor", "0")), int(query["limit"])
                page = chosen[start : start + limit]
                more = start + limit < len(chosen)
                self._json(
                    200,
                    {
                        "items": page,
                        "has_more": more,
                        "next_cursor": str(start + limit) if more else None,
                        "server_time": EPOCH_START + 86400,
                    },
                )

            def _json(self, status: int, document: Any) -> None:
                body = json.dumps(document, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_a_cursor_paged_api_with_an_oauth_form_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JGHUB_TEST_HRSS_SECRET", "hrss-secret")
    source = CursorSource()
    # Seven penalties, four of them changed in the same second, three to a page.
    stamps = [EPOCH_START, EPOCH_START + 60, *[EPOCH_START + 120] * 4, EPOCH_START + 180]
    source.items = [penalty(n, t) for n, t in enumerate(stamps)]
    options = {
        "url": f"{source.base}/open/v2/labor-inspection/penalties",
        "paging": "next_cursor",
        "since_param": "since",
        "page_size_param": "limit",
        "page_size": 3,
        "time_format": "epoch_seconds",
        "records_path": "items",
        "record_time_path": "updated_at",
        "record_id_path": "id",
        "token": {
            "url": f"{source.base}/open/v2/oauth/token",
            "encoding": "form",
            "fields": {"grant_type": "client_credentials", "client_id": "jghub"},
            "secret_fields": {"client_secret": "JGHUB_TEST_HRSS_SECRET"},
            "token_path": "access_token",
            "expires_path": "expires_in",
            "prefix": "Bearer ",
        },
    }
    config = parse_systems(
        {
            "systems": [
                {
                    "id": "hrss-penalty",
                    "name_zh": "省人力资源和社会保障厅",
                    "auth": {"scheme": "api_key", "key_env": "JGHUB_TEST_UNUSED"},
                    "inbound": [
                        {
                            "adapter": "rest_poller",
                            "message_type": "penalty_feed",
                            "options": options,
                        }
                    ],
                    "outbound": {"adapter": "outbox", "render": {"penalty_case": "cloudevent"}},
                    "routes": ["penalty_case.#"],
                }
            ]
        }
    )
    wire = Bus(f"sqlite:///{tmp_path / 'bus.sqlite3'}", config)
    try:
        system = config.system("hrss-penalty")

        def poller() -> RestPoller:
            context = AdapterContext(
                system=system,
                data_dir=tmp_path,
                ingress=Ingress(wire.broker, config.bind_mappings(folders())),
                channel=system.inbound[0],
                store=embedded_store(tmp_path),
            )
            return RestPoller(RestPoller.Options.model_validate(system.inbound[0].options), context)

        first = poller()
        assert first.poll_once() == 7
        got = case_numbers(wire.drain("hrss-penalty"))
        assert got == [f"330326RS2026{n:06d}" for n in range(7)]
        assert source.queries[0]["since"] == "0" and "cursor" not in source.queries[0]
        assert any("cursor" in q for q in source.queries)  # the run of equal times was paged
        first.close()
        source.items += [penalty(7, EPOCH_START + 180), penalty(8, EPOCH_START + 240)]
        second = poller()  # a restarted worker: the cursor file says where to go on
        assert second.poll_once() == 2
        assert case_numbers(wire.drain("hrss-penalty")) == [
            "330326RS2026000007",
            "330326RS2026000008",
        ]
        assert second.poll_once() == 0
        second.close()
    finally:
        wire.close()
        source.close()

"""A real hub for the SOAP push tests: create_app on loopback uvicorn, embedded bus or RabbitMQ.

with SoapHub.start(bus_kind, tmp_path) as hub:
    client = hub.zeep_client("eco-env-penalty", api_key=hub.keys["eco-env-penalty"])
    client.service.ReceiveCaseBatch(batch=payload)
    hub.drain("grassroots-platform", 3)      # the messages that reached that target
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from broker_support import RABBITMQ_URL, drain, require_rabbitmq
from hub_harness import quarantined
from zeep import Client, Plugin
from zeep.transports import Transport

import bus
from bus import Broker, Message
from hub.app import create_app
from hub.settings import HubSettings
from hub.simulators.server import LoopbackServer, free_port
from hub.systems import SystemsConfig, parse_systems
from monitor.quarantine import QuarantineEntry

SAMPLES = Path(__file__).resolve().parents[2] / "mappings" / "systems"

KEYS = {
    "eco-env-penalty": "eco-key-5f1d",
    "market-penalty": "market-token-77aa",
    "natres-penalty": "natres-key-31b0",
    "transport-penalty": "transport-key-9e42",
    "limited-penalty": "limited-key-0c3e",
    "capped-penalty": "capped-key-4a81",
}
ENV_OF = {
    "eco-env-penalty": "JGHUB_TEST_KEY_ECO",
    "market-penalty": "JGHUB_TEST_KEY_MARKET",
    "natres-penalty": "JGHUB_TEST_KEY_NATRES",
    "transport-penalty": "JGHUB_TEST_KEY_TRANSPORT",
    "limited-penalty": "JGHUB_TEST_KEY_LIMITED",
    "capped-penalty": "JGHUB_TEST_KEY_CAPPED",
}
SECRET_GRASSROOTS = "grassroots-secret-19"


def systems_config() -> SystemsConfig:
    """Three pushing SOAP systems and one target receiving what they send."""
    return parse_systems(
        {
            "systems": [
                {
                    "id": "eco-env-penalty",
                    "name_zh": "省生态环境厅环境行政处罚系统",
                    "auth": {"scheme": "api_key", "key_env": "JGHUB_TEST_KEY_ECO"},
                    "inbound": [
                        {
                            "adapter": "soap_push",
                            "message_type": "case_batch",
                            "options": {"operation": "ReceiveCaseBatch"},
                        },
                        {
                            "adapter": "soap_push",
                            "message_type": "task_feedback",
                            "options": {"operation": "ReceiveTaskFeedback"},
                        },
                    ],
                },
                {
                    # ASMX style: token and xmlDoc string parameters, SOAP 1.1 and 1.2.
                    "id": "market-penalty",
                    "name_zh": "省市场监督管理局行政处罚办案系统",
                    "auth": {"scheme": "api_key", "key_env": "JGHUB_TEST_KEY_MARKET"},
                    "inbound": [
                        {
                            "adapter": "soap_push",
                            "message_type": "case_upload",
                            "options": {
                                "operation": "UploadCaseXml",
                                "token_parameter": "token",
                                "path": "/systems/market-penalty/CaseService.asmx",
                            },
                        },
                        {
                            "adapter": "soap_push",
                            "message_type": "publication_upload",
                            "options": {
                                "operation": "UploadGsXml",
                                "token_parameter": "token",
                                "path": "/systems/market-penalty/CaseService.asmx",
                            },
                        },
                    ],
                    "max_body_bytes": 200_000,
                },
                {
                    # Document/literal SOAP 1.1: the document is the Body's element.
                    "id": "natres-penalty",
                    "name_zh": "省自然资源厅行政处罚系统",
                    "auth": {"scheme": "api_key", "key_env": "JGHUB_TEST_KEY_NATRES"},
                    "inbound": [
                        {
                            "adapter": "soap_push",
                            "message_type": "case_report",
                            "options": {"operation": "ReportCases"},
                        }
                    ],
                },
                {
                    # Document/literal SOAP 1.2 with a WS-Security UsernameToken.
                    "id": "transport-penalty",
                    "name_zh": "省交通运输厅行政执法系统",
                    "auth": {
                        "scheme": "api_key",
                        "key_env": "JGHUB_TEST_KEY_TRANSPORT",
                        "username": "jtyst-xzzf",
                    },
                    "inbound": [
                        {
                            "adapter": "soap_push",
                            "message_type": "case_report",
                            "options": {"operation": "ReportCases", "ws_security": True},
                        },
                        {
                            "adapter": "soap_push",
                            "message_type": "inspection_report",
                            "options": {"operation": "ReportInspections", "ws_security": True},
                        },
                    ],
                },
                {
                    "id": "limited-penalty",
                    "name_zh": "限流测试系统",
                    "mapping": "eco-env-penalty",
                    "auth": {"scheme": "api_key", "key_env": "JGHUB_TEST_KEY_LIMITED"},
                    "inbound": [
                        {
                            "adapter": "soap_push",
                            "message_type": "case_batch",
                            "options": {
                                "wsdl": "eco-env-penalty.wsdl",
                                "operation": "ReceiveCaseBatch",
                            },
                        }
                    ],
                    "rate_limit": {"per_second": 0.01, "burst": 1},
                },
                {
                    "id": "capped-penalty",
                    "name_zh": "记录数上限测试系统",
                    "mapping": "eco-env-penalty",
                    "auth": {"scheme": "api_key", "key_env": "JGHUB_TEST_KEY_CAPPED"},
                    "inbound": [
                        {
                            "adapter": "soap_push",
                            "message_type": "case_batch",
                            "options": {
                                "wsdl": "eco-env-penalty.wsdl",
                                "operation": "ReceiveCaseBatch",
                            },
                            "max_records": 2,
                        }
                    ],
                },
                {
                    "id": "grassroots-platform",
                    "name_zh": "基层治理四平台",
                    "auth": {
                        "scheme": "signed_app_key",
                        "key_env": "JGHUB_TEST_SECRET_GRASSROOTS",
                        "app_key": "jczl-test",
                    },
                    "outbound": {"adapter": "outbox"},
                    "routes": ["#"],
                },
            ]
        }
    )


class HeaderPlugin(Plugin):
    """A zeep plugin that changes outgoing HTTP headers (e.g. a wrong SOAPAction)."""

    def __init__(self, **headers: str) -> None:
        self.headers = headers

    def egress(
        self, envelope: Any, http_headers: dict[str, str], operation: Any, binding_options: Any
    ) -> tuple[Any, dict[str, str]]:
        http_headers.update(self.headers)
        return envelope, http_headers


@dataclass
class SoapHub:
    """A running hub: its server, its broker, the keys of its systems."""

    server: LoopbackServer
    broker: Broker
    app: Any
    keys: dict[str, str] = field(default_factory=lambda: dict(KEYS))

    @classmethod
    @contextmanager
    def start(
        cls, bus_kind: str, tmp_path: Path, *, public_url: str | None = None
    ) -> Iterator[SoapHub]:
        if bus_kind == "rabbitmq":
            require_rabbitmq()
            url = RABBITMQ_URL
        else:
            url = f"sqlite:///{tmp_path / 'bus.sqlite3'}"
        namespace = f"test-soap-{uuid.uuid4().hex[:8]}"
        saved = {name: os.environ.get(name) for name in _ENV}
        os.environ.update({ENV_OF[system]: key for system, key in KEYS.items()})
        os.environ["JGHUB_TEST_SECRET_GRASSROOTS"] = SECRET_GRASSROOTS
        broker = bus.connect(url)
        config = systems_config()
        try:
            # The port is known before the app is built: its WSDLs name their address under it.
            settings = HubSettings(
                data_dir=tmp_path / "var",
                namespace=namespace,
                port=free_port(),
                public_url=public_url,
            )
            app = create_app(settings, systems=config, broker=broker)
            with LoopbackServer(app, port=settings.port, name="hub") as server:
                yield cls(server=server, broker=broker, app=app)
        finally:
            try:
                broker.delete_topology(config.topology(namespace))
            finally:
                broker.close()
                for name, value in saved.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value

    def endpoint(self, system: str) -> str:
        if system == "market-penalty":
            return f"{self.server.url}/systems/market-penalty/CaseService.asmx"
        return f"{self.server.url}/systems/{system}/soap"

    def zeep_client(
        self,
        system: str,
        *,
        api_key: str | None = None,
        plugins: list[Any] | None = None,
        wsse: Any = None,
    ) -> Client:
        """A zeep client built from the served `?wsdl`, sending `api_key` as X-Api-Key."""
        session = requests.Session()
        if api_key is not None:
            session.headers["X-Api-Key"] = api_key
        transport = Transport(session=session, timeout=30, operation_timeout=30)
        return Client(
            f"{self.endpoint(system)}?wsdl", transport=transport, plugins=plugins or [], wsse=wsse
        )

    def drain(self, system: str, count: int, *, timeout: float = 20.0) -> list[Message]:
        """Consume and ack `count` messages from `system`'s queue (fewer if none come in time)."""
        return drain(self.broker, system, count, timeout)

    def drain_published(self, system: str) -> list[Message]:
        """Consume and ack what `system`'s queue holds now. The hub answers a push after the bus
        confirmed what it published, so this is all the pushes before added: records published
        before (by an earlier test on the same hub) are repeats and add nothing, and waiting for
        a fixed count of them would wait out the timeout."""
        return drain(self.broker, system, self.broker.depth(system), timeout=5)

    def quarantined(self) -> list[QuarantineEntry]:
        """What the hub's quarantine (in its store) holds, oldest first, with payloads."""
        return quarantined(self.app)


_ENV = (*ENV_OF.values(), "JGHUB_TEST_SECRET_GRASSROOTS")

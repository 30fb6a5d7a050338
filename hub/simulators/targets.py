"""Simulated receiving ends: the systems the hub delivers to, recording what arrives.

A `SimulatedTarget` is built from a system's `outbound` section, so it listens where the hub's
sender will call and speaks what that sender speaks:

- `rest_sender`: an HTTP endpoint at the options' `url`; checks the API key header when the
  options name one, and answers what the options' `answer_check` counts as success;
- `soap_sender`: the department's own SOAP service at the options' `wsdl` URL (WSDL from
  `hub/simulators/wsdl/<system id>.wsdl`, its address rewritten), checking the token
  parameters (`secret_parameters`), answering per its WSDL (ASMX <Result> text or code/message);
- `outbox`: nothing listens; the system pulls (see `hub.simulators.clients.OutboxPuller`).

A `rest_sender` with a `batch_url` also takes batches there and answers record by record
(`SimulatedTarget._batch_answer`); each record is logged alone, with the key it carries.

Every delivery is logged with its idempotency key, so duplicates (a retry after a timeout whose
first attempt did arrive) are visible. A `FailurePlan` makes a target flaky: a share of 5xx (or
SOAP Receiver faults), of 4xx (Client faults: content refused), of answers held past the sender's
timeout, and a delay on every answer. It can be changed while running: POST a plan as JSON to
`/_simulator/plan`; GET `/_simulator/deliveries` shows the log's counts.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from lxml import etree
from pydantic import BaseModel, ConfigDict, Field

from adapters.protocols.soap_service import FaultCode, SoapFault, SoapService, fault_response_body
from mappings.payloads import PayloadLimits
from systems import SystemConfig

SIMULATOR_WSDL = Path(__file__).parent / "wsdl"
"""The departments' own receiving services, one WSDL per simulated system."""

CONTROL_PREFIX = "/_simulator"


class FailurePlan(BaseModel):
    """How a simulated target misbehaves; shares are probabilities per request."""

    model_config = ConfigDict(extra="forbid")

    error_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of requests answered 503 (SOAP: a Receiver fault): transient.",
    )
    reject_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share answered 422 (SOAP: a Client fault): the content refused, permanent.",
    )
    timeout_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share held for `hold_s` before answering, past the sender's timeout.",
    )
    hold_s: float = Field(
        default=3.0, ge=0, description="How long a timed-out request is held, in seconds."
    )
    delay_s: float = Field(
        default=0.0, ge=0, description="Delay before every answer, in seconds (a slow target)."
    )
    refuse_containing: str | None = Field(
        default=None,
        description=(
            "Refuse (422; in a batch, that record's code 422) each record whose text contains "
            "this (REST), so a test chooses which records are refused."
        ),
    )
    refuse_batches: bool = Field(
        default=False,
        description="Batches: answer every batch request 422 whole (the upload refused).",
    )
    unanswered_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Batches: share of records the answer leaves out (a partial answer).",
    )
    seed: int = Field(default=0, description="Seed of the draws, for repeatable runs.")


@dataclass(frozen=True)
class Delivered:
    """One request the target received and how it answered."""

    system: str
    operation: str
    idempotency_key: str | None
    content_type: str
    body: bytes
    outcome: str
    """accepted, error (5xx), rejected (4xx), timeout (held), unauthorized."""
    at: float


class DeliveryLog:
    """What a target received, thread-safe."""

    def __init__(self) -> None:
        self._items: list[Delivered] = []
        self._lock = threading.Lock()

    def add(self, item: Delivered) -> None:
        with self._lock:
            self._items.append(item)

    def items(self) -> list[Delivered]:
        with self._lock:
            return list(self._items)

    def counts(self) -> dict[str, int]:
        """Requests by outcome."""
        return dict(Counter(item.outcome for item in self.items()))

    def accepted_keys(self) -> set[str]:
        """Idempotency keys of the deliveries answered with success (each counted once)."""
        return {i.idempotency_key or "" for i in self.items() if i.outcome == "accepted"}

    def duplicates(self) -> int:
        """Successful deliveries of a key that had already been delivered successfully."""
        accepted = [i.idempotency_key for i in self.items() if i.outcome == "accepted"]
        return len(accepted) - len(set(accepted))


class SimulatedTarget:
    """One receiving system, as its outbound configuration says (see the module docstring).

    Parameters:
      system: the system's configuration; its outbound adapter decides the protocol.
      plan: how it misbehaves (default: it does not).
      wsdl_folder: where the departments' receiving WSDLs are.
    """

    def __init__(
        self,
        system: SystemConfig,
        plan: FailurePlan | None = None,
        *,
        wsdl_folder: Path = SIMULATOR_WSDL,
    ) -> None:
        if system.outbound is None:
            raise ValueError(f"system {system.id} has no outbound section; nothing to receive")
        self.system = system
        self.plan = plan or FailurePlan()
        self.log = DeliveryLog()
        self.adapter = system.outbound.adapter
        self._options = dict(system.outbound.options)
        self._random = random.Random(self.plan.seed)
        self._draw_lock = threading.Lock()
        self.host, self.port, self.path = _listen_address(system, self._options)
        self.app = FastAPI(title=f"simulated {system.id}", docs_url=None, redoc_url=None)
        self._control_routes()
        if self.adapter == "rest_sender":
            self._rest_routes()
        elif self.adapter == "soap_sender":
            self._soap_routes(wsdl_folder)
        else:
            raise ValueError(
                f"system {system.id}: outbound adapter {self.adapter!r} has no listening end "
                "(an outbox is pulled; see OutboxPuller)"
            )

    def set_plan(self, plan: FailurePlan) -> None:
        """Misbehave differently from now on."""
        with self._draw_lock:
            self.plan = plan
            self._random = random.Random(plan.seed)

    # ------------------------------------------------------------------ behaviour

    def _draw(self) -> str:
        with self._draw_lock:
            plan = self.plan
            roll = self._random.random()
        if roll < plan.error_share:
            return "error"
        roll -= plan.error_share
        if roll < plan.reject_share:
            return "rejected"
        roll -= plan.reject_share
        if roll < plan.timeout_share:
            return "timeout"
        return "accepted"

    async def _misbehave(self, fate: str) -> None:
        plan = self.plan
        if fate == "timeout":
            await asyncio.sleep(plan.hold_s)
        elif plan.delay_s:
            await asyncio.sleep(plan.delay_s)

    def _record(self, request: Request, body: bytes, operation: str, outcome: str) -> None:
        key = request.headers.get("idempotency-key") or request.headers.get(
            str(self._options.get("idempotency_header") or "idempotency-key")
        )
        self.log.add(
            Delivered(
                system=self.system.id,
                operation=operation,
                idempotency_key=key,
                content_type=request.headers.get("content-type", ""),
                body=body,
                outcome=outcome,
                at=time.time(),
            )
        )

    # ------------------------------------------------------------------ REST

    def _rest_routes(self) -> None:
        key_env = self._options.get("api_key_env")
        key_header = str(self._options.get("api_key_header") or "X-Api-Key")
        success = _success_answer(self._options.get("answer_check"))
        batch_url = self._options.get("batch_url")
        batch_path = urlsplit(str(batch_url)).path if batch_url else None

        async def receive(request: Request) -> Response:
            body = await request.body()
            if key_env and request.headers.get(key_header) != os.environ.get(str(key_env)):
                self._record(request, body, request.url.path, "unauthorized")
                return JSONResponse({"code": "401", "msg": "bad key"}, status_code=401)
            fate = self._draw()
            refused = self.plan.refuse_containing
            if refused and request.url.path != batch_path and refused.encode() in body:
                fate = "rejected"
            await self._misbehave(fate)
            if request.url.path == batch_path and fate in ("accepted", "rejected"):
                if self.plan.refuse_batches:
                    self._record(request, body, request.url.path, "rejected")
                    return JSONResponse({"code": "422", "msg": "batch refused"}, status_code=422)
                return self._batch_answer(request, body, success)
            self._record(request, body, request.url.path, fate)
            if fate == "error":
                return JSONResponse({"code": "503", "msg": "busy, try later"}, status_code=503)
            if fate == "rejected":
                return JSONResponse({"code": "422", "msg": "content refused"}, status_code=422)
            return JSONResponse(success)

        self.app.add_api_route(
            "/{anything:path}", receive, methods=["POST", "PUT"], include_in_schema=False
        )

    # ------------------------------------------------------------------ batches

    def _batch_answer(self, request: Request, body: bytes, success: dict[str, Any]) -> Response:
        """Answer a batch upload record by record, logging each record by its `hubKey`.

        JSON: the records are the body's first list; the answer is `success` with
        `results: [{index, code, message}]`, counted from 0. XML: the records are the document
        element's children carrying @hubKey; the answer is
        `<Results><Result index="n"><Code/><Message/></Result></Results>`, counted from 1.
        A record is refused when the plan's `refuse_containing` is in it or by `reject_share`,
        and left out of the answer by `unanswered_share`.
        """
        xml = "xml" in request.headers.get("content-type", "")
        records: list[tuple[str | None, str]] = []
        if xml:
            root = etree.fromstring(body, parser=etree.XMLParser(resolve_entities=False))
            for child in root:
                if child.get("hubKey") is not None:
                    records.append((child.get("hubKey"), etree.tostring(child, encoding="unicode")))
        else:
            document = json.loads(body)
            items = next((v for v in document.values() if isinstance(v, list)), [])
            records = [(i.get("hubKey"), json.dumps(i, ensure_ascii=False)) for i in items]
        results: list[tuple[int, bool]] = []
        content_type = request.headers.get("content-type", "")
        for index, (key, text) in enumerate(records):
            fate = self._record_fate(text)
            self.log.add(
                Delivered(
                    self.system.id,
                    request.url.path,
                    key,
                    content_type,
                    text.encode(),
                    fate,
                    time.time(),
                )
            )
            if fate != "unanswered":
                results.append((index, fate == "accepted"))
        if xml:
            answer = etree.Element("Results")
            for index, taken in results:
                result = etree.SubElement(answer, "Result", index=str(index + 1))
                etree.SubElement(result, "Code").text = "0" if taken else "422"
                etree.SubElement(result, "Message").text = "received" if taken else "refused"
            return Response(
                etree.tostring(answer, xml_declaration=True, encoding="utf-8"),
                media_type="application/xml; charset=utf-8",
            )
        return JSONResponse(
            dict(
                success,
                results=[
                    {
                        "index": index,
                        "code": "0" if taken else "422",
                        "message": "received" if taken else "content refused",
                    }
                    for index, taken in results
                ],
            )
        )

    def _record_fate(self, text: str) -> str:
        with self._draw_lock:
            plan = self.plan
            roll = self._random.random()
        if plan.refuse_containing and plan.refuse_containing in text:
            return "rejected"
        if roll < plan.reject_share:
            return "rejected"
        if roll < plan.reject_share + plan.unanswered_share:
            return "unanswered"
        return "accepted"

    # ------------------------------------------------------------------ SOAP

    def _soap_routes(self, wsdl_folder: Path) -> None:
        wsdl = wsdl_folder / f"{self.system.id}.wsdl"
        if not wsdl.is_file():
            raise ValueError(
                f"system {self.system.id}: no simulated SOAP service ({wsdl} does not exist)"
            )
        service = SoapService.load(wsdl)
        tokens = {
            str(name): str(variable)
            for name, variable in dict(self._options.get("secret_parameters") or {}).items()
        }
        limits = PayloadLimits()

        async def describe(request: Request) -> Response:
            address = str(request.url.replace(query=""))
            return Response(service.wsdl(address), media_type="text/xml; charset=utf-8")

        async def call(request: Request) -> Response:
            body = await request.body()
            content_type = request.headers.get("content-type")
            version = service.versions[0]
            try:
                parsed = service.parse_request(
                    body,
                    content_type=content_type,
                    soap_action=request.headers.get("soapaction"),
                    limits=limits,
                )
                version = parsed.version
                for parameter, variable in tokens.items():
                    if parsed.parameters.get(parameter) != os.environ.get(variable):
                        self._record(request, body, parsed.operation.name, "unauthorized")
                        raise SoapFault(
                            FaultCode.SENDER, f"wrong {parameter}", subcode="Authentication"
                        )
                fate = self._draw()
                await self._misbehave(fate)
                self._record(request, body, parsed.operation.name, fate)
                if fate == "error":
                    raise SoapFault(FaultCode.RECEIVER, "the service is busy; try again later")
                if fate == "rejected":
                    raise SoapFault(FaultCode.SENDER, "the document is refused", subcode="Refused")
                return Response(
                    service.response(parsed, _soap_success(service, parsed)),
                    media_type=parsed.version.content_type,
                )
            except SoapFault as fault:
                return Response(
                    fault_response_body(fault, version),
                    status_code=fault.http_status(version),
                    media_type=version.content_type,
                )

        self.app.add_api_route(self.path, describe, methods=["GET"], include_in_schema=False)
        self.app.add_api_route(self.path, call, methods=["POST"], include_in_schema=False)

    # ------------------------------------------------------------------ control

    def _control_routes(self) -> None:
        async def set_plan(plan: FailurePlan) -> dict[str, Any]:
            self.set_plan(plan)
            return plan.model_dump()

        async def deliveries() -> dict[str, Any]:
            return {
                "system": self.system.id,
                "outcomes": self.log.counts(),
                "delivered": len(self.log.accepted_keys()),
                "duplicates": self.log.duplicates(),
                "plan": self.plan.model_dump(),
            }

        self.app.add_api_route(f"{CONTROL_PREFIX}/plan", set_plan, methods=["POST"])
        self.app.add_api_route(f"{CONTROL_PREFIX}/deliveries", deliveries, methods=["GET"])


def _listen_address(system: SystemConfig, options: dict[str, Any]) -> tuple[str, int, str]:
    url = options.get("url") or options.get("address") or options.get("wsdl")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(
            f"system {system.id}: its outbound options name no http URL to listen on "
            "(url, address or wsdl)"
        )
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "127.0.0.1", port, parts.path or "/"


def _success_answer(check: Any) -> dict[str, Any]:
    """The JSON body a sender's answer_check counts as success (default {"code": "0"})."""
    if not isinstance(check, dict) or not check.get("path"):
        return {"code": "0", "msg": "received"}
    path = str(check["path"])
    success = (check.get("success") or ["0"])[0]
    answer: dict[str, Any] = {}
    target = answer
    parts = path.split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = success
    return answer


def _soap_success(service: SoapService, request: Any) -> dict[str, Any]:
    names = service.response_fields(request.operation)
    if len(names) == 1 and service.response_is_text(request.operation):
        return {names[0]: "<Result><Code>0</Code><Message>received</Message></Result>"}
    values: dict[str, Any] = dict.fromkeys(names)
    if "code" in values:
        values["code"] = "0"
    if "message" in values:
        values["message"] = "received"
    return values

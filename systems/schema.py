"""What one external system is configured with: credentials, channels in and out, retry, limits.

These models are the entries of the systems file; `hub.systems` loads the file into them. They
form a room of their own, below the adapters, because the adapters, the centre and the hub are
all handed them, and a room imports only the rooms before it. The schema knows no plug-in: a
channel names its adapter and carries its options as data, and the loader checks those options
against the adapter's Options model through the registry, by passing the check in the validation
context (`OPTIONS_CHECK`), so a typo fails at start, with file and line, not at the first message.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bus.routing import check_pattern
from standard.checks import check_credit_code
from standard.dictionaries import dictionary

AdapterKind = Literal["inbound", "poller", "sender"]
"""The three kinds of adapter: push endpoints, pollers and senders."""

OptionsCheck = Callable[..., BaseModel]
"""`check(adapter_name, options, kinds=...)`: the options validated by the adapter's Options
model (defaults filled in), or an exception (a ValueError) naming each refused option. The loader
passes `adapters.registry.validate_options`."""

OPTIONS_CHECK = "options_check"
"""Key of the validation context under which the loader passes its OptionsCheck:
`SystemsConfig.model_validate(data, context={OPTIONS_CHECK: validate_options})`. Without it the
options are kept as written, unchecked."""

INBOUND_KINDS: tuple[AdapterKind, ...] = ("inbound", "poller")
SENDER_KINDS: tuple[AdapterKind, ...] = ("sender",)

SYSTEM_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
MESSAGE_TYPE_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"


class AuthConfig(BaseModel):
    """How a system proves who it is when it pushes or pulls.

    The secret itself never sits in a file: `key_env` names the environment variable holding it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    scheme: Literal["api_key", "signed_app_key", "mtls", "basic", "internal"] = Field(
        default="api_key",
        description=(
            "api_key: the X-Api-Key header (or the one named in `header`) carries the system's "
            "key. signed_app_key: the JSON body (or the X-App-Key, X-Request-Time, X-Sign "
            "headers) carries appKey, requestTime (yyyyMMddHHmmss Asia/Shanghai, or epoch "
            "milliseconds) and sign = lower-hex md5(appKey + secret + requestTime), as "
            "provincial gateways do. mtls: the client certificate's subject identifies the "
            "system (uvicorn verifies the certificate against the CA file in the settings). "
            "basic: HTTP Basic authentication with `username` and the password in key_env. "
            "internal: a system inside the hub (the collaboration centre); it has no inbound "
            "channel, so nothing ever authenticates as it."
        ),
    )
    header: str = Field(
        default="X-Api-Key",
        pattern=r"^[A-Za-z0-9-]+$",
        description=(
            "api_key only: the header the system sends its key in, when its software cannot "
            "send X-Api-Key, e.g. X-Tsjb-Token; 'Authorization' means 'Authorization: Bearer "
            "<key>'. The key is accepted in this header only."
        ),
        examples=["X-Api-Key", "Authorization", "X-Gateway-Token"],
    )
    username: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=r"^[^:]+$",
        description=(
            "basic: the user name the system sends; it names the system. api_key with a SOAP "
            "channel taking a WS-Security UsernameToken (option ws_security): the Username the "
            "token must carry (required there)."
        ),
    )
    key_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description=(
            "NAME of the environment variable holding the API key (api_key) or the shared secret "
            "(signed_app_key). Required for those two schemes; unused for mtls."
        ),
        examples=["JGHUB_KEY_GRASSROOTS"],
    )
    app_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="The appKey the system sends (signed_app_key only); it names the system.",
    )
    client_subject: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "The client certificate subject that names this system (mtls only), as RFC 4514 "
            "text, e.g. 'CN=sthjt-penalty,O=Zhejiang Ecology and Environment,C=CN'; compared "
            "attribute by attribute, order-insensitive."
        ),
    )
    max_clock_skew_s: int = Field(
        default=300,
        ge=1,
        le=86400,
        description=(
            "How far requestTime may be from the hub's clock, in seconds (signed_app_key only); "
            "a signature further away is refused. Within it each signature is accepted once "
            "(the serve processes share a replay cache that remembers it this long), so a "
            "sender signs every request anew."
        ),
    )

    @model_validator(mode="after")
    def _scheme_needs(self) -> AuthConfig:
        if self.scheme in ("api_key", "signed_app_key", "basic") and not self.key_env:
            raise ValueError(f"scheme {self.scheme} needs key_env (the variable holding the key)")
        if self.scheme == "signed_app_key" and not self.app_key:
            raise ValueError("scheme signed_app_key needs app_key (the appKey the system sends)")
        if self.scheme == "mtls" and not self.client_subject:
            raise ValueError("scheme mtls needs client_subject (its certificate's subject)")
        if self.scheme == "basic" and not self.username:
            raise ValueError("scheme basic needs username (the user name the system sends)")
        return self

    def secret(self) -> str:
        """The key or secret from the environment; SecretNotSet when it is not set."""
        if not self.key_env:
            raise SecretNotSet(f"scheme {self.scheme} has no secret")
        value = os.environ.get(self.key_env)
        if not value:
            raise SecretNotSet(
                f"environment variable {self.key_env} is not set or empty; it must hold the "
                f"{_SECRET_NAMES[self.scheme]} of this system"
            )
        return value


class SecretNotSet(ValueError):
    """A system's credential is not in the environment: the variable its key_env names is unset."""


_SECRET_NAMES = {
    "api_key": "API key",
    "signed_app_key": "shared secret",
    "basic": "password",
    "mtls": "secret",
    "internal": "secret",
}

CLOUDEVENT = "cloudevent"
"""The render entry that delivers a dataset as the canonical event (CloudEvents JSON)."""


class DepartmentConfig(BaseModel):
    """A department a system serves, as records name it (a DepartmentRef: name, credit code).

    Addressed records (a task's assignees, a warning's responsible department) are routed to the
    system serving the department they name: matched by credit code first, then by exact name.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        min_length=1,
        max_length=200,
        description="The department's name, exactly as records give it.",
    )
    credit_code: str | None = Field(
        default=None,
        description="Its unified social credit code (GB 32100, check character verified).",
        examples=["11330000002502194F"],
    )

    @field_validator("credit_code")
    @classmethod
    def _valid_code(cls, value: str | None) -> str | None:
        return None if value is None else check_credit_code(value)


class RetryPolicy(BaseModel):
    """How often and how long a failed delivery to the system is tried again."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    in_process_attempts: int = Field(
        default=3,
        ge=1,
        le=20,
        description=(
            "Attempts the worker makes in a row (with short backoff) before parking the message "
            "in the retry tiers; 1 means no in-process retry."
        ),
    )
    tiers: list[float] = Field(
        default=[10.0, 60.0, 600.0, 3600.0],
        description=(
            "Seconds a message waits in each delayed retry tier after the in-process attempts "
            "failed; after the last tier it goes to the dead letters. Empty: dead-letter at once."
        ),
    )

    @field_validator("tiers")
    @classmethod
    def _positive(cls, tiers: list[float]) -> list[float]:
        for index, delay in enumerate(tiers):
            if not delay > 0:
                raise ValueError(f"tiers[{index}] is {delay}; a delay must be > 0 seconds")
        return tiers


class RateLimit(BaseModel):
    """A token bucket per system: `burst` requests at once, refilled at `per_second`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per_second: float = Field(
        default=50.0,
        gt=0,
        description="Requests per second the system may make on average (the refill rate).",
    )
    burst: int = Field(
        default=100,
        ge=1,
        description="Requests the system may make at once after a quiet spell (bucket size).",
    )


DEFAULT_MAX_RECORDS = 10_000
"""Records a pushed payload may hold unless its channel says otherwise: the largest batches the
shipped simulators and benchmarks push hold 5,000 (bench/ingress.py's memory batch; the demo's
3 to 25), and the mappings' default body limit (32 MiB) is sized for 10,000 penalty records.
A payload's records are translated one after the other in one request, so this bounds the time
and memory one push can take."""


class ChannelConfig(BaseModel):
    """One way a system's messages come in: an inbound adapter (or poller) for one message type."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    adapter: str = Field(
        description="Name of an inbound adapter or poller (`jghub adapters list` shows them).",
        examples=["rest_push", "xml_push", "soap_push"],
    )
    message_type: str = Field(
        pattern=MESSAGE_TYPE_PATTERN,
        description="The inbound message type of the system's mapping that this channel carries.",
        examples=["event_report", "case_batch"],
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "The adapter's options (`jghub adapters doc NAME`); validated against its Options "
            "model when the configuration is loaded, defaults filled in."
        ),
    )
    max_records: int = Field(
        default=DEFAULT_MAX_RECORDS,
        ge=1,
        le=1_000_000,
        description=(
            "Most records one pushed payload may hold. A payload with more is refused whole "
            "before any record is translated or published (HTTP 413 naming both numbers; SOAP: "
            "a fault over 413) and kept in the quarantine. Pollers are bounded by their page "
            "size instead."
        ),
    )

    @model_validator(mode="after")
    def _options_fit_adapter(self, info: ValidationInfo) -> ChannelConfig:
        _check_options(self, INBOUND_KINDS, info)
        return self


DEFAULT_DELIVERY_CONCURRENCY = 8
"""Deliveries in flight per target and worker unless configured: against a target answering in
20 ms, 8 at a time delivered 6-7 times as many messages per second as one at a time
(bench/outbound.py --latency-ms 20)."""

MAX_BATCH_RECORDS = 500
"""Most records `outbound.batch` puts in one request: a worker holds a thread for each record
in hand (twice a batch), waiting for its batch's answer."""


class OutboundBatch(BaseModel):
    """Several records to the system in one request (a target that accepts batches)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_records: int = Field(
        ge=2,
        le=MAX_BATCH_RECORDS,
        description=(
            "Most records in one request. A worker holds up to twice as many messages of the "
            "queue (its prefetch and handler threads), so one batch fills while the one before "
            "it is sent."
        ),
        examples=[100],
    )
    max_wait_ms: int = Field(
        ge=1,
        le=60_000,
        description=(
            "Longest a record waits for its batch to fill: a batch is sent when it holds "
            "max_records or when its first record has waited this long."
        ),
        examples=[200],
    )

    @property
    def in_hand(self) -> int:
        """Messages a worker holds at once: this batch filling and the one being sent."""
        return 2 * self.max_records


class OutboundConfig(BaseModel):
    """How messages reach the system: a sender adapter and which payload to render per dataset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    adapter: str = Field(
        description="Name of a sender adapter (e.g. rest_sender, soap_sender, outbox).",
        examples=["rest_sender", "outbox"],
    )
    render: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Canonical dataset → the system's outbound message type that renders it, or "
            f"'{CLOUDEVENT}' to deliver the canonical event itself (CloudEvents JSON). A dataset "
            "routed to the system but missing here is dead-lettered (stage render), and a route "
            "whose dataset word has no entry is refused when the configuration is loaded."
        ),
        examples=[{"grassroots_event": "event_feedback", "collaboration_task": CLOUDEVENT}],
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="The sender's options (`jghub adapters doc NAME`); validated at load.",
    )
    concurrency: int = Field(
        default=DEFAULT_DELIVERY_CONCURRENCY,
        ge=1,
        le=256,
        description=(
            "Deliveries to the system a worker makes at once (threads sharing its connection "
            "pool, breaker and retries), at most the queue's prefetch. Most of a delivery is "
            "waiting for the target's answer, so a few at a time multiply what one worker "
            "delivers; 1 delivers one after the other, in queue order."
        ),
    )

    batch: OutboundBatch | None = Field(
        default=None,
        description=(
            "Deliver up to max_records records in one request, for a target that takes batches "
            "(its sender must carry them and each outbound message type it renders must have a "
            "`batch` section; `cloudevent` entries still go one a request). Each record is "
            "settled alone: the target's answer names each record's result. Replaces "
            "`concurrency`: the batch fixes how many messages a worker holds."
        ),
        examples=[{"max_records": 100, "max_wait_ms": 200}],
    )

    @property
    def in_hand(self) -> int:
        """Deliveries a worker handles at once: `concurrency`, or twice a batch."""
        return self.batch.in_hand if self.batch is not None else self.concurrency

    @model_validator(mode="after")
    def _options_fit_adapter(self, info: ValidationInfo) -> OutboundConfig:
        _check_options(self, SENDER_KINDS, info)
        return self


def _check_options(
    section: ChannelConfig | OutboundConfig, kinds: Collection[AdapterKind], info: ValidationInfo
) -> None:
    """Check `section.options` with the loader's OptionsCheck, when it passed one."""
    context: Mapping[str, Any] = info.context or {}
    check: OptionsCheck | None = context.get(OPTIONS_CHECK)
    if check is None:
        return
    validated = check(section.adapter, section.options, kinds=kinds)
    # Frozen model: the normalised options replace what the file said, defaults included.
    object.__setattr__(section, "options", validated.model_dump(mode="json"))


class CollaborationConfig(BaseModel):
    """The business-collaboration centre's terms: which department gets which complaint, and when
    its task is due.

    The scenario table is data: adding a scenario or moving one to another department is a line
    in the systems file, not code.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_deadline_days(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "deadline_days" in data:
            raise ValueError(
                "deadline_days is no longer read: a task's deadline follows the centre's "
                "deadline rules (config/deadlines.yaml, task.by_type and task.by_scenario, "
                "JGHUB_DEADLINES_FILE); remove it here and set the days there"
            )
        return data

    scenarios: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Complaint scenario code (dictionary complaint_scenario) → id of the department "
            "system that handles it; the task is addressed to that system's first department."
        ),
        examples=[{"01": "market-penalty", "02": "housing-penalty", "03": "health-penalty"}],
    )
    event_kinds: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Grassroots event kind (its `scenario`, dictionary complaint_scenario) → id of the "
            "department system that serves it: a reported event of a kind listed here becomes a "
            "task (type 3, 基层治理事件转办) for that system's first department; events of other "
            "kinds are left to the grassroots platform."
        ),
        examples=[{"02": "housing-penalty", "09": "eco-env-penalty", "13": "market-penalty"}],
    )
    default_system: str | None = Field(
        default=None,
        description=(
            "The system that gets complaints of a scenario the table does not list; None: such "
            "a complaint is dead-lettered with its scenario named, for an operator to route."
        ),
    )
    source: str = Field(
        default="330000/ywxtzx",
        min_length=1,
        max_length=200,
        description="The envelope source of what the centre derives (region/department code).",
    )
    concurrency: int = Field(
        default=DEFAULT_DELIVERY_CONCURRENCY,
        ge=1,
        le=256,
        description=(
            "Messages of its queue a worker handles at once (at most the queue's prefetch); "
            "most of the work is waiting for the bus to confirm what it derived."
        ),
    )

    def named_systems(self) -> list[tuple[tuple[str, ...], str]]:
        """Each system the tables send complaints or events to, with where it is named in this
        section (("scenarios", code), ("event_kinds", code) or ("default_system",)): each must
        serve a department."""
        named: list[tuple[tuple[str, ...], str]] = [
            (("scenarios", code), system) for code, system in self.scenarios.items()
        ]
        named += [(("event_kinds", code), system) for code, system in self.event_kinds.items()]
        if self.default_system is not None:
            named.append((("default_system",), self.default_system))
        return named

    @field_validator("scenarios", "event_kinds")
    @classmethod
    def _known_scenarios(cls, table: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        codes = dictionary("complaint_scenario").codes()
        unknown = sorted(set(table) - set(codes))
        if unknown:
            what = "scenarios" if info.field_name == "scenarios" else "event kinds"
            raise ValueError(
                f"{what} {', '.join(unknown)} are not codes of dictionary complaint_scenario "
                f"(codes: {', '.join(sorted(codes))})"
            )
        return table


REFERENCE_DATASETS = ("supervision_item", "enforcement_officer", "supervised_object")
"""The datasets the reference lists are fed from (`reference.lists.LIST_DATASETS`)."""


class ReferenceConfig(BaseModel):
    """The reference lists' feed: the system whose queue the worker takes into the store's
    catalogue, officer and object lists (`reference.stored`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    concurrency: int = Field(
        default=4,
        ge=1,
        le=256,
        description=(
            "Changes of its queue a worker writes at once (at most the queue's prefetch); each "
            "is one short durable transaction, and writers of one list wait for each other."
        ),
    )


class SystemConfig(BaseModel):
    """One connected external system: who it is, how it authenticates, its channels, its routes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(
        pattern=SYSTEM_ID_PATTERN,
        max_length=64,
        description="The system's id: the source word of its routing keys and part of its URLs.",
        examples=["grassroots-platform", "eco-env-penalty"],
    )
    name_zh: str = Field(min_length=1, description="The system's Chinese name.")
    mapping: str | None = Field(
        default=None,
        description="Folder of its mappings under the mappings root; default: the system's id.",
    )
    auth: AuthConfig = Field(
        description=(
            "How it proves who it is when it pushes or pulls: a scheme and the name of the "
            "variable holding its credential. Required: there is no safe default."
        ),
    )
    departments: list[DepartmentConfig] = Field(
        default_factory=list,
        description=(
            "The departments it serves, the first being its own: records addressed to any of "
            "them (a collaboration task's assignees, a risk warning's responsible department) "
            "are routed to it under 'dataset.region.source.<its id>'."
        ),
    )
    inbound: list[ChannelConfig] = Field(
        default_factory=list,
        description="The channels its messages come in through (push endpoints, pollers).",
    )
    outbound: OutboundConfig | None = Field(
        default=None,
        description="How messages reach it; None for a system that only sends.",
    )
    collaboration: CollaborationConfig | None = Field(
        default=None,
        description=(
            "Makes this internal system (auth scheme internal) the business-collaboration "
            "centre: it reads the canonical events its routes select (open complaints, feedback "
            "on its tasks) and publishes the tasks and results it derives. Instead of outbound."
        ),
    )
    reference: ReferenceConfig | None = Field(
        default=None,
        description=(
            "Makes this internal system (auth scheme internal) the feed of the reference lists: "
            "the worker writes the catalogue items, enforcement officers and supervised objects "
            "its routes select into the store. Instead of outbound."
        ),
    )
    routes: list[str] = Field(
        default_factory=list,
        description=(
            "AMQP topic patterns over routing keys 'dataset.region.source', or "
            "'dataset.region.source.addressee' for a record addressed to one system, selecting "
            "what the system receives (e.g. 'collaboration_task.*.*.market-penalty', "
            "'penalty_case.#', '*.330100.*'). Needs `outbound` (or `collaboration`, `reference`)."
        ),
    )
    retry: RetryPolicy = Field(
        default_factory=RetryPolicy, description="Retries of failed deliveries to the system."
    )
    rate_limit: RateLimit = Field(
        default_factory=RateLimit, description="Its request budget on the hub's endpoints."
    )
    max_body_bytes: int | None = Field(
        default=None,
        gt=0,
        description="Largest request body it may send, in bytes; default: the hub's setting.",
    )
    penalty_publication_working_days: int = Field(
        default=7,
        gt=0,
        le=60,
        description=(
            "Working days within which its departments' penalty decisions are published (双公示) "
            "after the decision, as the centre watches them: 7 by the national rule, 20 for "
            "market regulation."
        ),
    )

    @field_validator("routes")
    @classmethod
    def _routes_are_patterns(cls, routes: list[str]) -> list[str]:
        for route in routes:
            check_pattern(route)
        if len(set(routes)) != len(routes):
            raise ValueError(f"routes repeat a pattern: {routes}")
        return routes

    @model_validator(mode="after")
    def _consistent(self) -> SystemConfig:
        consumers = (self.outbound, self.collaboration, self.reference)
        receives = any(section is not None for section in consumers)
        if self.routes and not receives:
            raise ValueError("routes need an outbound section saying how messages are delivered")
        if receives and not self.routes:
            raise ValueError("an outbound section needs routes saying which messages to deliver")
        if self.collaboration is not None:
            if self.auth.scheme != "internal":
                raise ValueError(
                    "the collaboration centre runs inside the hub: auth scheme internal"
                )
            if self.outbound is not None:
                raise ValueError(
                    "the collaboration centre reads canonical events itself: no outbound section"
                )
            if not self.departments:
                raise ValueError(
                    "the collaboration centre needs `departments` (its own first): it is the "
                    "dispatcher of its tasks, and their feedback comes back addressed to it"
                )
        if self.reference is not None:
            if self.auth.scheme != "internal":
                raise ValueError(
                    "the reference lists' feed runs inside the hub: auth scheme internal"
                )
            if self.outbound is not None or self.collaboration is not None:
                raise ValueError(
                    "the reference lists' feed writes what it reads into the store: no outbound "
                    "or collaboration section"
                )
            others = sorted(
                {route.split(".")[0] for route in self.routes} - {"*", "#", *REFERENCE_DATASETS}
            )
            if others:
                raise ValueError(
                    f"the reference lists are fed from {', '.join(REFERENCE_DATASETS)}; routes "
                    f"select {', '.join(others)}, which they do not take"
                )
        if self.auth.scheme == "internal":
            if self.inbound:
                raise ValueError(
                    "an internal system (auth scheme internal) has no inbound channels"
                )
            rendered = sorted(
                dataset
                for dataset, message_type in (self.outbound.render if self.outbound else {}).items()
                if message_type != CLOUDEVENT
            )
            if rendered and self.mapping is None:
                raise ValueError(
                    f"an internal system has no mapping folder, so it reads canonical events: "
                    f"render {', '.join(rendered)} as {CLOUDEVENT}"
                )
        seen: set[tuple[str, str]] = set()
        for channel in self.inbound:
            key = (channel.adapter, channel.message_type)
            if key in seen:
                raise ValueError(
                    f"two channels use adapter {channel.adapter} for message type "
                    f"{channel.message_type}; their endpoints would collide"
                )
            seen.add(key)
        return self

    def unrendered_routes(self) -> list[tuple[int, str]]:
        """(index, reason) of each route whose literal dataset word outbound.render lacks.

        Such a route would only ever feed the dead letters (see `OutboundConfig.render`).
        """
        if self.outbound is None:
            return []
        found = []
        for index, route in enumerate(self.routes):
            dataset = route.split(".")[0]
            if dataset not in ("*", "#") and dataset not in self.outbound.render:
                found.append(
                    (
                        index,
                        f"route {route!r} selects dataset {dataset!r}, which outbound.render "
                        f"does not list; add '{dataset}: <outbound message type>' (or "
                        f"'{dataset}: {CLOUDEVENT}' to send the canonical event)",
                    )
                )
        return found

    @property
    def mapping_id(self) -> str:
        """The folder of its mappings."""
        return self.mapping or self.id

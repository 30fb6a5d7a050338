"""The bus topology as data: targets, their routes and retry tiers, and the names derived from them.

Names (one namespace per deployment; tests use a unique one each):

    exchange   f"{ns}.canonical"        topic exchange every publisher writes to
    queue      f"{ns}.target.{q}"       one per target system, bound with the target's routes
    retry tier f"{ns}.retry.{q}.{i}"    message TTL = retry_delays[i], dead-lettering back to the
                                        target queue
    dead       f"{ns}.dead.{q}"         what failed for good, with its whole history
    quarantine f"{ns}.quarantine"       inbound payloads rejected before they became messages

A target is named by the id of the system it is (`eco-env-penalty`) everywhere a user sees or
types it; its queues carry `q = queue_word(name)`, the name with '-' read as '_'
(`jghub.target.eco_env_penalty`). Queue names were made that way before target names allowed
'-', and a queue keeps its name so that the messages it holds on a running broker are still
consumed after an upgrade. Two targets whose queue words meet are refused (`Topology`), and
`Topology.target` finds a target by either spelling: an operator who types `eco_env_penalty`
gets the target `eco-env-penalty`.

Routing keys are "dataset.region.source" (e.g. "penalty_case.330100.dept_scjg"), so a route
pattern such as "penalty_case.#", "*.330100.*" or "complaint.*.complaint_platform" picks messages
by dataset, region or source. The bus itself does not interpret the words.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bus.errors import TopologyError
from bus.routing import check_pattern

TARGET_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
NAMESPACE_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"


def queue_word(target: str) -> str:
    """The word a target's queue names carry: its name with '-' read as '_' (see the module
    docstring); the same for both spellings of one target."""
    return target.replace("-", "_")


class Target(BaseModel):
    """A system the bus delivers to: its queue receives every message one of its routes matches."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(
        description=(
            "The id of the system it is, e.g. 'national' or 'eco-env-penalty'; its queue names "
            "carry it with '-' read as '_' (see queue_word)."
        ),
        pattern=TARGET_NAME_PATTERN,
        max_length=64,
        examples=["national", "eco-env-penalty", "dept_scjg"],
    )
    routes: list[str] = Field(
        description=(
            "AMQP topic binding patterns over the routing key 'dataset.region.source': '*' is "
            "exactly one word, '#' zero or more words. A message goes to every target with at "
            "least one matching route, once."
        ),
        min_length=1,
        examples=[["penalty_case.#"], ["*.330100.*", "complaint.*.complaint_platform"]],
    )
    retry_delays: list[float] = Field(
        default=[10.0, 60.0, 600.0, 3600.0],
        description=(
            "Seconds a message waits in each retry tier, in order: the first transient failure "
            "waits retry_delays[0], the second retry_delays[1], and so on; the failure after the "
            "last tier sends the message to the dead letters. Empty: no retries."
        ),
        examples=[[10, 60, 600, 3600], [0.2, 0.4]],
    )
    prefetch: int = Field(
        default=50,
        ge=1,
        le=65535,
        description=(
            "How many messages a consumer of this target may hold unsettled at once (AMQP "
            "prefetch count); consume(prefetch=...) overrides it."
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

    @field_validator("retry_delays")
    @classmethod
    def _delays_are_positive(cls, delays: list[float]) -> list[float]:
        for tier, delay in enumerate(delays):
            if not delay > 0:
                raise ValueError(f"retry_delays[{tier}] is {delay}; a delay must be > 0 seconds")
        return delays

    def retry_tier(self, failed_attempts: int) -> int | None:
        """The tier a message enters after its `failed_attempts`-th failure, or None: dead letters.

        `failed_attempts` counts the failure just recorded (1 after the first failure).
        """
        tier = failed_attempts - 1
        return tier if 0 <= tier < len(self.retry_delays) else None

    def postpone_tier(self, attempts: int) -> int | None:
        """The tier a postponed message (not tried, see `Delivery.postpone`) waits in: the one
        its `attempts` failures so far put it in, the first when it has none; None: no tiers."""
        if not self.retry_delays:
            return None
        return min(max(attempts - 1, 0), len(self.retry_delays) - 1)


class Topology(BaseModel):
    """All targets of one namespace; `Broker.declare(topology)` creates what it names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str = Field(
        default="jghub",
        description="Prefix of every exchange and queue name; tests use a unique one each.",
        pattern=NAMESPACE_PATTERN,
        max_length=100,
    )
    targets: list[Target] = Field(
        default_factory=list,
        description="The systems messages are delivered to, each with its routes and retry tiers.",
    )

    @model_validator(mode="after")
    def _target_names_unique(self) -> Topology:
        names = [t.name for t in self.targets]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"target names must be unique; repeated: {repeated}")
        by_word: dict[str, list[str]] = {}
        for name in names:
            by_word.setdefault(queue_word(name), []).append(name)
        meeting = [f"{' and '.join(n)} (both {w!r})" for w, n in by_word.items() if len(n) > 1]
        if meeting:
            raise ValueError(
                "two targets would share queues, their names being the same with '-' read as "
                f"'_': {'; '.join(meeting)}; rename one of them"
            )
        return self

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Topology:
        """Validate configuration data; raise TopologyError naming each bad field and its value."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'topology'}: {err['msg']} "
                f"(got {err['input']!r})"
                for err in exc.errors()
            )
            raise TopologyError(f"invalid bus topology: {problems}") from exc

    def target(self, name: str) -> Target:
        """The target called `name`, or `name` with '-' and '_' taken as one (`eco_env_penalty`
        finds `eco-env-penalty`: the name targets had before they took their system's id);
        TopologyError naming the known targets if the topology has none."""
        found = self._spelt(name)
        if found is None:
            known = ", ".join(sorted(t.name for t in self.targets)) or "none"
            raise TopologyError(
                f"unknown target {name!r} in namespace {self.namespace!r}; known targets: {known}"
            )
        return found

    def target_name(self, stored: str) -> str:
        """The name of the target `stored` names in either spelling (see `target`), or `stored`
        itself for a target this topology lacks (one removed from the configuration since)."""
        found = self._spelt(stored)
        return stored if found is None else found.name

    def _spelt(self, name: str) -> Target | None:
        word = queue_word(name)
        return next((t for t in self.targets if queue_word(t.name) == word), None)

    # Names. Both backends use these, so a queue seen in the RabbitMQ management UI and a
    # row in the embedded store carry the same name. `target` may be spelt either way.

    @property
    def exchange(self) -> str:
        return f"{self.namespace}.canonical"

    def target_queue(self, target: str) -> str:
        return f"{self.namespace}.target.{queue_word(target)}"

    def retry_queue(self, target: str, tier: int) -> str:
        return f"{self.namespace}.retry.{queue_word(target)}.{tier}"

    def dead_queue(self, target: str) -> str:
        return f"{self.namespace}.dead.{queue_word(target)}"

    @property
    def quarantine_queue(self) -> str:
        return f"{self.namespace}.quarantine"

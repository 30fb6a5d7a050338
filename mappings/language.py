"""The mapping language: what a system folder's YAML files may say, as validated models.

A system folder holds `system.yaml` (a SystemSpec) and mapping files. A mapping file either
translates one inbound message type into a dataset of the standard (`direction: inbound`) or
renders a dataset's records for the system (`direction: outbound`).

Every value a mapping computes is a **field rule**: one *source* and then a *pipe* of named
functions, then a *default*::

    penalty_id: p:CaseNo                                # a path (shorthand for {path: p:CaseNo})
    decision_date: {path: p:JDRQ, pipe: [trim, {date: yyyyMMdd}]}
    fine_amount: {path: p:FKJE, pipe: [decimal, wan_yuan], default: "0"}
    data_source: {const: 省生态环境厅}
    party_name: {concat: [p:Surname, p:GivenName], separator: ""}
    party_kind: {when: "p:ZJLX = '01'", then: {const: "1"}, else: {const: "2"}}
    penalty_kinds: {each: p:CFZL/p:Item, pipe: [{lookup: penalty_kind}]}
    inspectors: {each: p:ZFRY, fields: {name: p:XM, certificate_number: p:ZFZH}}
    party: {name: p:DSR, certificate_code: p:ZJHM}      # nested object (no rule keyword)

Sources: `path` (XPath 1.0 for XML, JMESPath for JSON), `const`, `concat` (of rules),
`when`/`then`/`else`, `each` (a list: one item per node or element of a path), `fields` (an
object). A mapping without any rule keyword is shorthand for `{fields: ...}`.

Beside its field rules an inbound mapping says what the system does not send and what it sends
that nobody reads::

    assume:                      # a value the system never sends, and why (carried in lineage)
      case_source: {value: "9", why: the vendor's system has no 案件来源}
    ignore:                      # source fields read by nobody on purpose
      - {path: /Batch/@sender, reason: the sender is known from the channel}
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mappings.payloads import PayloadLimits

RULE_KEYWORDS = frozenset(
    {
        "path",
        "const",
        "concat",
        "separator",
        "when",
        "then",
        "else",
        "each",
        "fields",
        "pipe",
        "default",
    }
)
SOURCES = ("path", "const", "concat", "when", "each", "fields")

PipeItem = Annotated[
    str | dict[str, Any],
    Field(
        description=(
            "A function: its name (`trim`), or a one-key mapping from its name to its options "
            "(`{date: {format: yyyyMMdd}}`) or to the value of its main option "
            "(`{date: yyyyMMdd}`)."
        )
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Condition(_Strict):
    """The test of a `when`: a path, optionally piped, and what its value must be.

    A bare text is a path whose value must be present and true: for XPath a non-empty node-set,
    string or true boolean (so `p:ZJLX = '01'` works as written); for JMESPath any value that
    is not null, false, empty text, empty list or empty object.
    """

    path: str = Field(description="XPath (XML) or JMESPath (JSON) evaluated on the record.")
    pipe: list[PipeItem] = Field(
        default_factory=list, description="Functions applied to the value before the test."
    )
    equals: Any = Field(default=None, description="The value must equal this.")
    in_: list[Any] | None = Field(
        default=None, alias="in", description="The value must be one of these."
    )
    matches: str | None = Field(
        default=None, description="The value (as text) must fully match this regular expression."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        tests = [name for name in ("equals", "in", "matches") if self._given(name)]
        if len(tests) > 1:
            raise ValueError(f"a condition has one test; it has {', '.join(tests)}")
        return self

    def _given(self, name: str) -> bool:
        attribute = "in_" if name == "in" else name
        return attribute in self.model_fields_set

    @property
    def test(self) -> str:
        """Which test the condition makes: equals, in, matches or truthy."""
        for name in ("equals", "in", "matches"):
            if self._given(name):
                return name
        return "truthy"


class FieldRule(_Strict):
    """How one value is computed: exactly one source, then `pipe`, then `default`."""

    path: str | None = Field(
        default=None,
        description=(
            "XPath 1.0 (XML, with the mapping's namespace prefixes) or JMESPath (JSON), "
            "relative to the record. XML: the text of the first node selected (absent if none). "
            "JSON: the value found. An empty text counts as absent."
        ),
    )
    const: Any = Field(default=None, description="A fixed value.")
    concat: list[FieldRule] | None = Field(
        default=None, description="Rules whose texts are joined (absent parts are skipped)."
    )
    separator: str = Field(default="", description="Text put between the parts of a `concat`.")
    when: Condition | None = Field(
        default=None, description="A condition choosing between `then` and `else`."
    )
    then: FieldRule | None = Field(default=None, description="The rule used when `when` holds.")
    else_: FieldRule | None = Field(
        default=None,
        alias="else",
        description="The rule used when `when` does not hold; default: the value is absent.",
    )
    each: str | None = Field(
        default=None,
        description=(
            "A path selecting several nodes (XML) or a list (JSON): the value is a list with one "
            "item per node, each item being the node's text piped, or, with `fields`, an object."
        ),
    )
    fields: dict[str, FieldRule] | None = Field(
        default=None,
        description="An object: its fields' rules, evaluated on the item of `each` or the record.",
    )
    pipe: list[PipeItem] = Field(
        default_factory=list,
        description="Functions applied in order to the value (see `jghub mappings functions`).",
    )
    default: Any = Field(
        default=None, description="The value used when the source and pipe give no value."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"path": data}
        if isinstance(data, dict) and data and not RULE_KEYWORDS.intersection(data):
            return {"fields": data}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> FieldRule:
        given = [name for name in SOURCES if self._given(name)]
        if "each" in given and "fields" in given:
            given.remove("fields")
        if len(given) != 1:
            listed = ", ".join(given) if given else "none"
            raise ValueError(
                f"a rule has exactly one source among {', '.join(SOURCES)}; it has {listed}"
            )
        if self.when is not None and self.then is None:
            raise ValueError("`when` needs a `then` rule")
        if self.when is None and (self.then is not None or self.else_ is not None):
            raise ValueError("`then` and `else` need a `when`")
        if self.concat is None and "separator" in self.model_fields_set:
            raise ValueError("`separator` belongs to `concat`")
        return self

    def _given(self, name: str) -> bool:
        if name == "const":
            return "const" in self.model_fields_set
        return getattr(self, name) is not None

    @property
    def source(self) -> str:
        """The rule's source: path, const, concat, when, each or fields."""
        return next(name for name in SOURCES if self._given(name))


class EnvelopeRules(_Strict):
    """Rules for the envelope around each record (CloudEvents attributes and extensions)."""

    operation: FieldRule | None = Field(
        default=None,
        description=(
            "The change: must give insert, update or delete (or i, u, d). Usually a lookup of "
            "the system's I/U/D flag. Default: every record is an insert."
        ),
    )
    time: FieldRule | None = Field(
        default=None,
        description="When the record changed in the source (a date-time). Default: now.",
    )
    batch_no: FieldRule | None = Field(
        default=None, description="The source's batch number (date + sequence, e.g. 2019041100002)."
    )
    record_id: FieldRule | None = Field(
        default=None,
        description=(
            "The source's id of this change, when it has one; it makes the event id stable so "
            "a resent record is recognised. Default: a new id per translation."
        ),
    )


class Ignored(_Strict):
    """A source field that no rule reads, on purpose: its path and why (`jghub mappings test`
    no longer reports it as unread)."""

    path: str = Field(
        description=(
            "The field as the unread report writes it, from the payload's root: an XPath such "
            "as `/CaseData/@sender` (with the mapping's prefixes) or a JMESPath such as "
            "`data.cases[].dsr.lxdh`. Everything inside it is ignored too."
        )
    )
    reason: str = Field(default="", description="Why nobody reads it (optional).")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data


class Assumption(_Strict):
    """A value the mapping assumes for a field the system does not send, and why."""

    value: Any = Field(description="The value the field gets, as a rule's `const` would give.")
    why: str = Field(
        min_length=1,
        description=(
            "Why the value is assumed: what the system does not send and on what the value "
            "rests. Carried in every record's lineage (`lineageassumed`)."
        ),
    )

    @model_validator(mode="after")
    def _has_value(self) -> Assumption:
        if "value" not in self.model_fields_set or self.value is None:
            raise ValueError("an assumption needs a `value`")
        if not self.why.strip():
            raise ValueError("`why` must say why the value is assumed")
        return self


class InboundMapping(_Strict):
    """Translate one inbound message type of the system into records of one dataset."""

    direction: Literal["inbound"] = Field(description="`inbound`: the system's payload → standard.")
    message_type: str = Field(
        pattern=r"^[a-z][a-z0-9_.-]*$",
        description="Name of the message type, as adapters and `jghub mappings run --type` say it.",
    )
    description: str = Field(default="", description="What the message is, in a sentence.")
    format: Literal["xml", "json"] = Field(description="The payload's syntax.")
    dataset: str = Field(
        description="The standard's dataset the records become, e.g. penalty_case."
    )
    namespaces: dict[str, str] = Field(
        default_factory=dict,
        description="XML namespace prefixes used in the paths: prefix → namespace URI.",
    )
    records: str = Field(
        description=(
            "Path selecting the records: an XPath from the document (e.g. /p:Batch/p:Case) or a "
            "JMESPath giving a list or one object (e.g. data.events, or @ for the whole payload)."
        )
    )
    allow_empty: bool = Field(
        default=False,
        description="Accept a payload in which `records` selects nothing (an empty batch).",
    )
    envelope: EnvelopeRules = Field(
        default_factory=EnvelopeRules, description="Rules for each record's envelope."
    )
    fields: dict[str, FieldRule] = Field(
        description="The dataset's fields (English names) and the rule computing each."
    )
    assume: dict[str, Assumption] = Field(
        default_factory=dict,
        description=(
            "Fields the system does not send, with the value assumed and `why` (mandatory). "
            "The record gets the value, its lineage names the field and the reason, and data "
            "quality counts it as assumed, never as sent. A field is either mapped or assumed."
        ),
    )
    ignore: list[Ignored] = Field(
        default_factory=list,
        description=(
            "Source fields no rule reads, on purpose: a path (as the unread report writes it) "
            "or `{path, reason}`. `jghub mappings test` no longer reports them as unread, and "
            "warns about an ignored path that a rule reads or no sample contains."
        ),
    )


class BatchResults(_Strict):
    """How a target's answer to a batch names each record's result.

    Paths read the answer in the mapping's own format: JMESPath over a JSON answer, XPath 1.0
    (in the mapping's namespaces) over an XML one. `each` selects the results; the others are
    read on one result.
    """

    each: str = Field(
        description="Path over the whole answer to the list of per-record results.",
        examples=["results", "/r:Results/r:Result"],
    )
    index: str | None = Field(
        default=None,
        description=(
            "Path in a result to the position of its record in the batch (counted from "
            "`first_index`). Absent: the results follow the records' order, one each."
        ),
        examples=["index", "@XH"],
    )
    first_index: Literal[0, 1] = Field(
        default=0, description="The position `index` gives the batch's first record."
    )
    success: str = Field(
        description="Path in a result to the value saying the record was taken.",
        examples=["code", "r:Code"],
    )
    values: list[str] = Field(
        min_length=1,
        description=(
            "Values of `success` meaning taken (compared as text); any other value is the "
            "target refusing that record, which is dead-lettered alone."
        ),
        examples=[["0"], ["true"]],
    )
    message: str | None = Field(
        default=None,
        description="Path in a result to the target's reason, quoted in a refused record's.",
        examples=["message", "r:Message"],
    )


class BatchRendering(_Strict):
    """How records rendered one by one are wrapped into one batch request, and its answer read.

    JSON: the body is the object `template` renders, with the records' list under `records`.
    XML: the body's document element is `root` (default: the mapping's own); the elements of
    `template` come first, then each record's rendering without its document element (its
    children), so a batch of `<YJXF><YJ/></YJXF>` records is `<YJXF><YJ/><YJ/>...</YJXF>`.
    Template paths are JMESPath over the batch: `count` (records in it), `batch_key` (its
    idempotency key) and `time` (when it was made, ISO 8601).
    """

    records: str | None = Field(
        default=None,
        pattern=r"^[^.\s]+$",
        description="JSON: the key of the body holding the list of records (required there).",
        examples=["data"],
    )
    root: str | None = Field(
        default=None,
        description="XML: the batch document element (a prefixed name); default: `root`.",
    )
    template: dict[str, Any] = Field(
        default_factory=dict,
        description="The batch's own fields beside its records, as in an outbound `template`.",
        examples=[{"batchNo": "batch_key", "count": "count"}],
    )
    record_key: str | None = Field(
        default=None,
        description=(
            "Name of the key (JSON) or attribute (XML, on each element a record contributes) "
            "carrying each record's idempotency key, so the target can drop a record it already "
            "took when the batch comes again."
        ),
        examples=["hubKey"],
    )
    results: BatchResults = Field(description="How the answer names each record's result.")


class OutboundMapping(_Strict):
    """Render records of one dataset into a payload of the system (a reverse mapping)."""

    direction: Literal["outbound"] = Field(
        description="`outbound`: standard → the system's payload."
    )
    message_type: str = Field(
        pattern=r"^[a-z][a-z0-9_.-]*$", description="Name of the rendered message type."
    )
    description: str = Field(default="", description="What the message is, in a sentence.")
    format: Literal["xml", "json"] = Field(description="The payload's syntax.")
    dataset: str = Field(description="The standard's dataset whose records are rendered.")
    namespaces: dict[str, str] = Field(
        default_factory=dict,
        description="XML namespaces of the output: prefix → URI (the prefixes are written as is).",
    )
    root: str | None = Field(
        default=None, description="XML: the document element, a prefixed name such as t:Task."
    )
    encoding: str = Field(
        default="utf-8", description="XML: the output encoding, written in the declaration."
    )
    template: dict[str, Any] = Field(
        description=(
            "The output's shape. Keys are JSON keys, or XML element names (`t:Name`), "
            "attributes (`@code`) and the element's own text (`#text`). Values are field rules "
            "whose paths are JMESPath over the envelope: `data.penalty_id`, `operation`, `time`."
        )
    )

    batch: BatchRendering | None = Field(
        default=None,
        description=(
            "How several records go in one request, for a target configured with "
            "`outbound.batch`; without it the message type is delivered one record a request."
        ),
    )

    @model_validator(mode="after")
    def _xml_has_root(self) -> OutboundMapping:
        if self.format == "xml" and not self.root:
            raise ValueError("an XML rendering needs a `root` element")
        if self.format == "json" and self.root:
            raise ValueError("`root` is for XML renderings")
        if self.batch is not None:
            if self.format == "json" and (self.batch.records is None or self.batch.root):
                raise ValueError(
                    "a JSON batch names its records' key (`batch.records`) and no `batch.root`"
                )
            if self.format == "xml" and self.batch.records is not None:
                raise ValueError(
                    "an XML batch puts its records under `batch.root`; `batch.records` is for JSON"
                )
        return self


MappingSpec = Annotated[InboundMapping | OutboundMapping, Field(discriminator="direction")]


class MappingFile(BaseModel):
    """Wrapper to validate one mapping file against the union of inbound and outbound."""

    spec: MappingSpec


FlowName = Literal["penalty_case", "collaboration_task", "risk_warning", "supervision_notice"]
"""A flow of the hub a system may take part in (`SystemSpec.flows`, `mappings.flows`)."""


class SystemSpec(_Strict):
    """`system.yaml`: who the system is and the limits its payloads must respect."""

    id: str = Field(
        pattern=r"^[a-z][a-z0-9-]*$",
        description="The system's id: the folder name, used in routing keys and commands.",
    )
    name: str = Field(description="English name.")
    name_zh: str = Field(description="Chinese name (中文名称).")
    source: str = Field(
        pattern=r"^\d{6}/[a-z0-9][a-z0-9_-]*$",
        description=(
            "The envelope's source: province region code (6 digits), a slash and the department "
            "code, e.g. 330000/sthjt."
        ),
    )
    description: str = Field(default="", description="What the system is and how it connects.")
    limits: PayloadLimits = Field(
        default_factory=PayloadLimits, description="Size and depth limits of its payloads."
    )
    flows: list[FlowName] = Field(
        default_factory=list,
        description=(
            "The hub's flows the system takes part in, each demanding its mappings "
            "(`mappings.flows`): penalty_case (sends penalty cases or their publications: an "
            "inbound mapping of penalty_case or penalty_publication), collaboration_task "
            "(takes collaboration tasks and answers them: an outbound and an inbound mapping of "
            "collaboration_task), risk_warning (takes risk warnings and answers them: an "
            "outbound mapping of risk_warning, an inbound one of risk_feedback), "
            "supervision_notice (takes the centre's 督办通知: an outbound mapping of "
            "supervision_notice). A department that documents only its cases lists "
            "[penalty_case]; `jghub systems check` and the contract tests demand no more."
        ),
        examples=[["penalty_case", "collaboration_task", "risk_warning", "supervision_notice"]],
    )

    @field_validator("flows")
    @classmethod
    def _flows_once(cls, flows: list[str]) -> list[str]:
        repeated = sorted({flow for flow in flows if flows.count(flow) > 1})
        if repeated:
            raise ValueError(f"flows repeat {', '.join(repeated)}")
        return flows

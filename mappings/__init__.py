"""Declarative mappings between external systems' payloads and the unified standard.

    from mappings import load_system, load_all

    system = load_system("mappings/systems/eco-env-penalty")   # validated and compiled once
    result = system.translate("case_batch", payload, charset="gbk")
    result.envelopes        # one standard.envelope.Envelope per good record
    result.errors           # one TranslationError per problem of a bad record
    system.render("case_return", envelope)   # bytes for the system

A payload that cannot be read at all raises PayloadRejected (or a subclass naming the reason);
a broken mapping raises MappingError when it is loaded. `jghub mappings language` and
`jghub mappings functions` print the language's reference.

The rules the mappings apply are exported here too, for the adapters that apply them to what
they carry (the adapters import this package, not its modules): hardened XML parsing within
`PayloadLimits` (`parse_xml`), decoding by BOM, declaration and charset (`decode_payload`) and
encoding text as its declaration says (`encode_as_declared`, `codec_of`), date patterns
(`compile_pattern` and the epoch helpers), and dotted paths into JSON (`value_at`).
"""

from mappings.dateformats import (
    EPOCH_NAMES,
    PatternInvalid,
    build_datetime,
    compile_pattern,
    from_epoch,
    to_epoch,
)
from mappings.decoding import codec_of, decode_payload, encode_as_declared
from mappings.errors import (
    EncodingMismatch,
    ForbiddenMarkup,
    MalformedPayload,
    MappingEngineError,
    MappingError,
    NoRecords,
    NumberOutOfBoundsPayload,
    PayloadRejected,
    PayloadTooDeep,
    PayloadTooLarge,
    PayloadTooManyRecords,
    RenderError,
    TranslationError,
    UnknownMessageType,
)
from mappings.inbound import RecordKeys, Translation
from mappings.outbound import BatchAnswerError, OutboundRendering, RecordPart
from mappings.paths import value_at
from mappings.payloads import PayloadLimits, parse_xml
from mappings.system import (
    SYSTEMS_ROOT,
    MappingVersion,
    SystemMappings,
    load_all,
    load_system,
    mapping_version,
)

__all__ = [
    "EPOCH_NAMES",
    "SYSTEMS_ROOT",
    "BatchAnswerError",
    "EncodingMismatch",
    "ForbiddenMarkup",
    "MalformedPayload",
    "MappingEngineError",
    "MappingError",
    "MappingVersion",
    "NoRecords",
    "NumberOutOfBoundsPayload",
    "OutboundRendering",
    "PatternInvalid",
    "PayloadLimits",
    "PayloadRejected",
    "PayloadTooDeep",
    "PayloadTooLarge",
    "PayloadTooManyRecords",
    "RecordKeys",
    "RecordPart",
    "RenderError",
    "SystemMappings",
    "Translation",
    "TranslationError",
    "UnknownMessageType",
    "build_datetime",
    "codec_of",
    "compile_pattern",
    "decode_payload",
    "encode_as_declared",
    "from_epoch",
    "load_all",
    "load_system",
    "mapping_version",
    "parse_xml",
    "to_epoch",
    "value_at",
]

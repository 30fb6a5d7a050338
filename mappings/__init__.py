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
"""

from mappings.decoding import codec_of, encode_as_declared
from mappings.errors import (
    EncodingMismatch,
    ForbiddenMarkup,
    MalformedPayload,
    MappingEngineError,
    MappingError,
    NoRecords,
    PayloadRejected,
    PayloadTooDeep,
    PayloadTooLarge,
    RenderError,
    TranslationError,
    UnknownMessageType,
)
from mappings.inbound import Translation
from mappings.paths import value_at
from mappings.system import SYSTEMS_ROOT, SystemMappings, load_all, load_system

__all__ = [
    "SYSTEMS_ROOT",
    "EncodingMismatch",
    "ForbiddenMarkup",
    "MalformedPayload",
    "MappingEngineError",
    "MappingError",
    "NoRecords",
    "PayloadRejected",
    "PayloadTooDeep",
    "PayloadTooLarge",
    "RenderError",
    "SystemMappings",
    "Translation",
    "TranslationError",
    "UnknownMessageType",
    "codec_of",
    "encode_as_declared",
    "load_all",
    "load_system",
    "value_at",
]

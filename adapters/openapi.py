"""How the channels read in the OpenAPI document: the credential each system sends, its body limit.

The gatekeeper (`adapters.security`) decides who may push; this module says the same in the
terms of OpenAPI 3.1, so that a client generated from `/openapi.json` knows what to send:

    schemes = security_schemes(config.systems)        # components.securitySchemes
    route = {..., "security": security_requirement(system.auth)}
    description = body_limit_text(gatekeeper, system)   # "Body limit: 33554432 bytes (...)"
    declare_problems(document, own_format={"/systems/x/xml/y"})   # errors: problem documents

One scheme per way of authenticating, shared by the systems that use it: an API key in a named
header (`ApiKey-<header>`), a key as `Authorization: Bearer` (`BearerKey`), HTTP Basic of a
system (`SystemBasic`; the operators' accounts keep FastAPI's `HTTPBasic`), a client certificate
(`ClientCertificate`, OpenAPI's mutualTLS) and the provincial gateways' signed request
(`SignedAppKey`). OpenAPI has no type for the last one, so it is declared as the header that
carries the signature (X-Sign) and described in full.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from typing import TYPE_CHECKING, Any

from adapters.problems import PROBLEM_MEDIA_TYPE, Problem
from systems import AuthConfig, SystemConfig

if TYPE_CHECKING:
    from adapters.security import Gatekeeper

SecurityScheme = dict[str, Any]
"""An OpenAPI Security Scheme Object."""

SecurityRequirement = list[dict[str, list[str]]]
"""An operation's `security`: any one of the listed schemes suffices."""

_SIGNED_REQUEST = (
    "The provincial gateways' signed request (auth scheme signed_app_key). Send X-App-Key (the "
    "system's appKey), X-Request-Time (yyyyMMddHHmmss in Asia/Shanghai, or epoch milliseconds, "
    "within the system's max_clock_skew_s of the hub's clock) and X-Sign = lower-hex "
    "md5(appKey + secret + requestTime); or appKey, requestTime and sign as the first members "
    "of the JSON body (within its first 64 KiB). Each signature is accepted once: sign every "
    "request anew. The signature covers neither the body nor a nonce: use TLS."
)


def security_scheme(auth: AuthConfig) -> tuple[str, SecurityScheme] | None:
    """The name and OpenAPI object of the scheme a system with `auth` authenticates by; None for
    a system inside the hub (auth scheme internal), which never authenticates."""
    if auth.scheme == "api_key" and auth.header.lower() == "authorization":
        return "BearerKey", _http(
            "bearer",
            "The system's API key as 'Authorization: Bearer <key>' (auth scheme api_key with "
            "header Authorization).",
        )
    if auth.scheme == "api_key":
        return f"ApiKey-{auth.header}", _header(
            auth.header,
            f"The system's API key in the {auth.header} header (auth scheme api_key). A SOAP "
            "channel may take it in a token parameter or a WS-Security UsernameToken instead "
            "(see its WSDL).",
        )
    if auth.scheme == "basic":
        return "SystemBasic", _http(
            "basic", "HTTP Basic with the system's user name and password (auth scheme basic)."
        )
    if auth.scheme == "signed_app_key":
        return "SignedAppKey", _header("X-Sign", _SIGNED_REQUEST)
    if auth.scheme == "mtls":
        return "ClientCertificate", {
            "type": "mutualTLS",
            "description": "A client certificate the hub's CA bundle verifies, whose subject "
            "names the system (auth scheme mtls); needs HTTPS to the hub.",
        }
    return None


def _http(scheme: str, description: str) -> SecurityScheme:
    return {"type": "http", "scheme": scheme, "description": description}


def _header(name: str, description: str) -> SecurityScheme:
    return {"type": "apiKey", "in": "header", "name": name, "description": description}


def security_schemes(systems: Iterable[SystemConfig]) -> dict[str, SecurityScheme]:
    """Every scheme the configured systems authenticate by, by name (components.securitySchemes)."""
    return dict(found for system in systems if (found := security_scheme(system.auth)) is not None)


def security_requirement(auth: AuthConfig) -> SecurityRequirement:
    """An operation's `security` for a channel of a system with `auth`."""
    found = security_scheme(auth)
    return [] if found is None else [{found[0]: []}]


def body_limit_text(gatekeeper: Gatekeeper, system: SystemConfig) -> str:
    """The body limit the gatekeeper holds `system` to, with where it comes from."""
    limit = gatekeeper.body_limit(system.id)
    origin = (
        "the system's max_body_bytes"
        if system.max_body_bytes
        else "the hub default, JGHUB_MAX_BODY_BYTES"
    )
    return f"Body limit: {limit} bytes ({origin}); a larger body is refused with 413."


PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"
_RESULTS = frozenset({"IngressResult", "Readiness"})
"""Schemas of answers that report rather than refuse, kept under an error status: a push's
per-record answer when some records were not confirmed (503), /ready's report (503)."""


def declare_problems(document: dict[str, Any], *, own_format: Set[str] = frozenset()) -> None:
    """Declare in `document` that every operation answers its errors with a problem document:
    the Problem schema in the components; each 4xx and 5xx response of an operation as
    application/problem+json (FastAPI's 422 included), and 4XX and 5XX for the rest. The paths
    in `own_format` (XML and SOAP channels: their refusals are XML, their WSDL) are left alone."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    schemas["Problem"] = schema
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": PROBLEM_SCHEMA_REF}}}
    for path, operations in document.get("paths", {}).items():
        if path in own_format:
            continue
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status, response in responses.items():
                if not status.startswith(("4", "5")):
                    continue
                content = response.setdefault("content", {})
                shown = str(content.get("application/json", {}).get("schema", {}).get("$ref", ""))
                if shown.rpartition("/")[2] in _RESULTS:
                    continue  # a report, as declared (a push's 503 declares both itself)
                content.pop("application/json", None)
                content.update(problem)
                if status == "422":
                    response["description"] = "The request's parameters break a rule."
            responses.setdefault(
                "4XX", {"description": "Refused: a problem document.", "content": problem}
            )
            responses.setdefault(
                "5XX", {"description": "The hub failed: a problem document.", "content": problem}
            )

"""Where a body carries its sender's credential: a SOAP envelope's token parameter or
WS-Security UsernameToken, a JSON body's signed app key, found among the body's first bytes.

The gatekeeper (`adapters.security`) reads at most `CREDENTIAL_PREFIX_BYTES` of a body before
its sender is known, and asks these finders what those bytes carry. Both read their input as a
stream of parse events (lxml's pull parser, ijson), so a prefix cut anywhere ends the search
with what was found before the cut, and nothing of the rest is built.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import ijson
from lxml import etree

from adapters.errors import Unauthenticated

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSSE_SECURITY = f"{{{WSSE}}}Security"
"""The WS-Security header block ("{namespace}local"), where a UsernameToken travels."""
PASSWORD_TEXT = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
    "#PasswordText"
)


@dataclass(frozen=True)
class EnvelopeCredentials:
    """The credentials a SOAP envelope's first bytes carry (None: not there).

    Attributes:
      operation: the local name of the Body's element (the operation, for RPC-style services).
      token: the text of the first token parameter in it.
      username, password: a WS-Security UsernameToken's Username and PasswordText Password.
    """

    operation: str | None = None
    token: str | None = None
    username: str | None = None
    password: str | None = None


_FEED_BYTES = 4096


def envelope_credentials(prefix: bytes, token_parameters: Iterable[str]) -> EnvelopeCredentials:
    """Find a token parameter (`token_parameters`, by local name) in the Body's element and a
    UsernameToken in the Header among the first bytes of a SOAP envelope, parsed as a stream.

    A syntax error, or the end of `prefix`, ends the search with what was found before it. No
    entity is resolved, no DTD or network resource loaded. Raises Unauthenticated for a
    UsernameToken password of another type than #PasswordText (#PasswordDigest).
    """
    tokens = frozenset(token_parameters)
    parser = etree.XMLPullParser(
        events=("start", "end"),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
    )
    path: list[str] = []
    found: dict[str, str] = {}
    try:
        for at in range(0, len(prefix), _FEED_BYTES):
            parser.feed(prefix[at : at + _FEED_BYTES])
            for event, element in parser.read_events():
                name = etree.QName(element)
                if event == "start":
                    path.append(
                        name.localname if name.namespace != WSSE else f"wsse:{name.localname}"
                    )
                    if len(path) == 3 and path[:2] == ["Envelope", "Body"]:
                        found.setdefault("operation", name.localname)
                    continue
                _note_credential(path, element, tokens, found)
                path.pop()
    except etree.XMLSyntaxError:
        pass
    return EnvelopeCredentials(**found)


_USERNAME_TOKEN = ["Envelope", "Header", "wsse:Security", "wsse:UsernameToken"]


def _note_credential(
    path: list[str], element: etree._Element, tokens: frozenset[str], found: dict[str, str]
) -> None:
    """Keep the credential `element` (just closed, at `path`) holds, if it is one."""
    if len(path) == 4 and path[:2] == ["Envelope", "Body"] and path[3] in tokens:
        found.setdefault("token", element.text or "")
    elif len(path) == 5 and path[:4] == _USERNAME_TOKEN:
        if path[4] == "wsse:Username":
            found.setdefault("username", element.text or "")
        elif path[4] == "wsse:Password":
            kind = element.get("Type", PASSWORD_TEXT)
            if kind != PASSWORD_TEXT:
                raise Unauthenticated(
                    f"WS-Security password type {kind[:120]!r} is not accepted; send "
                    "#PasswordText over TLS"
                )
            found.setdefault("password", element.text or "")


SIGNED_FIELDS = ("appKey", "requestTime", "sign")
"""The members of a JSON body that carry its signed app key."""
_SCALARS = frozenset({"string", "number", "boolean", "null"})


def signed_fields(prefix: bytes) -> dict[str, Any]:
    """appKey, requestTime and sign among the top-level members of the JSON object that `prefix`
    (a body's first bytes) begins, as far as the prefix holds them entirely.

    The prefix is read as a stream of parse events (ijson), so other members' values are
    stepped over without being built, and a prefix cut in the middle of the records ends the
    search with what was found before it. A member named twice counts as the last, as in
    `json.loads`.
    """
    found: dict[str, Any] = {}
    # The prefix ends, or stops being JSON (or holds a number Python will not read): what was
    # found before stands.
    with contextlib.suppress(ijson.JSONError, ValueError):
        for path, event, value in ijson.parse(prefix):
            if path in SIGNED_FIELDS and event in _SCALARS:
                found[path] = value
    return found

"""Who may push and pull: per-system authentication, body size limits and rate limits.

`Gatekeeper.admit(request, owner)` runs, in this order, before any payload is parsed:

1. the owner system's token bucket (429 with Retry-After when it is empty);
2. the declared Content-Length against the owner's body limit (413);
3. a credential in the headers, if any: `X-Api-Key` (or the header a system's `auth.header`
   names, `Authorization: Bearer` included), HTTP Basic, a verified client certificate (mTLS),
   or `X-App-Key`/`X-Request-Time`/`X-Sign`; it must name a system (401), and that system must
   be the owner (403);
4. the body, read while counting its bytes (413 as soon as the limit is passed, whatever the
   headers said);
5. with no credential in the headers, the signed app key in the JSON body (`appKey`,
   `requestTime`, `sign`), verified the same way.

A refusal names the credential the client sent (the header, the SOAP parameter, the
UsernameToken) and the rule it broke; an Authorization header without the `Bearer ` scheme gets
a hint saying how to send the key.

SOAP services may carry the key inside the envelope instead: `username_token_password` reads it
from a WS-Security UsernameToken (PasswordText only), and `Gatekeeper.identify_key` checks it.

A signed app key is `sign = lower-hex md5(appKey + secret + requestTime)`; requestTime is
`yyyyMMddHHmmss` in Asia/Shanghai (epoch milliseconds are accepted too: some gateways send
them) and must be within the system's `max_clock_skew_s` of the hub's clock. Keys and signatures
are compared in constant time. Secrets come from the environment variables the configuration
names, read once when the gatekeeper is built, so a missing one fails at start.

The scheme is the departments' and is kept, but it signs neither the body nor a nonce: within
the clock window a captured signature would carry any body. So a signature is good for one
request: the gatekeeper remembers each one in a `ReplayCache` shared by every serve process
until its window has passed, and refuses it the second time (401, "signature already used
within its window"). What the scheme still does not give: the body's integrity (a request
intercepted before it arrives can be altered and sent once under its signature) and
confidentiality (the body travels as sent); TLS gives both.

Inbound adapters call `await gatekeeper.admit(request, owner)` and answer a refusal
(`RequestRefused`) in the channel's own format: JSON, XML or the system's receipt (the HTTP push
adapters), a SOAP fault (the SOAP push, which runs the steps itself).
`ClientCertificateH11Protocol` makes uvicorn hand the verified client certificate's subject to
the app (the ASGI TLS extension's `client_cert_name`), which uvicorn does not do yet.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from lxml import etree
from starlette.requests import Request
from uvicorn.protocols.http.h11_impl import H11Protocol

from adapters.errors import (
    AdapterConfigError,
    BadRequest,
    BodyTooLarge,
    Forbidden,
    RateLimited,
    Unauthenticated,
)
from adapters.replay_cache import ReplayCache
from standard.errors import quoted
from systems import SecretNotSet, SystemConfig

SHANGHAI = ZoneInfo("Asia/Shanghai")
API_KEY_HEADER = "x-api-key"
APP_KEY_HEADER = "x-app-key"
REQUEST_TIME_HEADER = "x-request-time"
SIGN_HEADER = "x-sign"
CLIENT_SUBJECT_HEADER = "x-client-subject"
"""Set by a trusted TLS-terminating proxy to the verified client certificate's subject."""

WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSSE_SECURITY = f"{{{WSSE}}}Security"
"""The WS-Security header block ("{namespace}local"), where a UsernameToken travels."""
PASSWORD_TEXT = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
    "#PasswordText"
)

Clock = Callable[[], float]


class TokenBucket:
    """A thread-safe token bucket: `burst` tokens, refilled at `rate` per second.

    Parameters:
      rate: tokens added per second.
      burst: the most tokens the bucket holds (and so the most requests at once).
      clock: monotonic seconds; replaceable for tests.
    """

    def __init__(self, rate: float, burst: int, *, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take one token: 0.0 when granted, else the seconds until one will be there."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate


@dataclass(frozen=True)
class Admission:
    """A request let in: who sent it (authenticated) and its body (within the limit)."""

    caller: str
    body: bytes


def subject_attributes(subject: str | Iterable[Any]) -> frozenset[tuple[str, str]]:
    """A certificate subject as a set of (attribute, value), from RFC 4514 text or the tuple
    form `ssl.SSLSocket.getpeercert()` gives; attribute names are normalised (CN, O, C...)."""
    pairs: list[tuple[str, str]] = []
    if isinstance(subject, str):
        for part in _split_unescaped(subject, ","):
            for item in _split_unescaped(part, "+"):
                name, _, value = item.partition("=")
                pairs.append((name.strip(), value.strip().replace("\\,", ",")))
    else:
        for rdn in subject:
            for attribute in rdn:
                pairs.append((str(attribute[0]), str(attribute[1])))
    return frozenset((_ATTRIBUTE_NAMES.get(n.lower(), n.upper()), v) for n, v in pairs)


_ATTRIBUTE_NAMES = {
    "commonname": "CN",
    "cn": "CN",
    "organizationname": "O",
    "o": "O",
    "organizationalunitname": "OU",
    "ou": "OU",
    "countryname": "C",
    "c": "C",
    "localityname": "L",
    "l": "L",
    "stateorprovincename": "ST",
    "st": "ST",
    "serialnumber": "SERIALNUMBER",
    "emailaddress": "EMAILADDRESS",
}


def _split_unescaped(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current = ""
    escaped = False
    for char in text:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            current += char
            escaped = True
        elif char == separator:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def format_subject(subject: Iterable[Any]) -> str:
    """RFC 4514-style text of a subject in `getpeercert()` form (most specific first)."""
    rdns = []
    for rdn in reversed(list(subject)):
        parts = []
        for name, value in rdn:
            short = _ATTRIBUTE_NAMES.get(str(name).lower(), str(name))
            escaped = str(value).replace(",", "\\,")
            parts.append(f"{short}={escaped}")
        rdns.append("+".join(parts))
    return ",".join(rdns)


def expected_sign(app_key: str, secret: str, request_time: str) -> str:
    """The signature a system with `secret` sends: lower-hex md5(appKey + secret + requestTime)."""
    text = f"{app_key}{secret}{request_time}".encode()
    # The provincial gateways' scheme is MD5; it authenticates, it is not used as a password hash.
    return hashlib.md5(text, usedforsecurity=False).hexdigest()


class RequestSigner:
    """The sending end of a signed app key: a fresh requestTime for each request, and its sign.

    The hub lets each signature through once, so a sender must never sign two requests alike.
    requestTime is epoch milliseconds (which the hub accepts beside yyyyMMddHHmmss, whose one
    second would allow one request a second); when the clock has not moved on since this
    process's last requestTime for the same appKey, the next millisecond is taken, so
    concurrent senders in one process never collide.

    Parameters:
      app_key: the appKey the system sends.
      secret: its shared secret.
      clock: epoch seconds (tests replace it).
    """

    _last: ClassVar[dict[str, int]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, app_key: str, secret: str, *, clock: Clock = time.time) -> None:
        self.app_key = app_key
        self.secret = secret
        self._clock = clock

    def sign(self) -> tuple[str, str]:
        """A fresh (requestTime, sign) pair."""
        with RequestSigner._lock:
            millis = max(int(self._clock() * 1000), RequestSigner._last.get(self.app_key, 0) + 1)
            RequestSigner._last[self.app_key] = millis
        request_time = str(millis)
        return request_time, expected_sign(self.app_key, self.secret, request_time)

    def headers(self) -> dict[str, str]:
        """The X-App-Key, X-Request-Time and X-Sign headers of a fresh signature."""
        request_time, sign = self.sign()
        return {"X-App-Key": self.app_key, "X-Request-Time": request_time, "X-Sign": sign}


def parse_request_time(value: str) -> float:
    """Epoch seconds of a requestTime: yyyyMMddHHmmss (Asia/Shanghai) or epoch milliseconds."""
    if len(value) == 14 and value.isdigit():
        parsed = datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=SHANGHAI)
        return parsed.timestamp()
    if len(value) == 13 and value.isdigit():
        return int(value) / 1000.0
    raise ValueError(value)


def username_token_password(security: etree._Element) -> str | None:
    """The password of the UsernameToken in a wsse:Security header block; None without one.

    The password is the system's key, checked like the X-Api-Key header (`identify_key`). Only
    a PasswordText password is accepted (the type an absent Type attribute means); any other
    type (#PasswordDigest) raises Unauthenticated.
    """
    password = security.find(f"{{{WSSE}}}UsernameToken/{{{WSSE}}}Password")
    if password is None:
        return None
    kind = password.get("Type", PASSWORD_TEXT)
    if kind != PASSWORD_TEXT:
        raise Unauthenticated(
            f"WS-Security password type {kind!r} is not accepted; send #PasswordText over TLS"
        )
    return password.text


class Gatekeeper:
    """Authentication, body limits and rate limits for every configured system (thread-safe).

    Parameters:
      systems: the configured systems; secrets are read from their `key_env` variables now.
      default_max_body_bytes: the body limit of a system without its own `max_body_bytes`.
      trusted_proxies: client addresses whose X-Client-Subject header is believed (mTLS
        terminated by a proxy in front of the hub).
      require_secrets: raise AdapterConfigError when a secret's variable is not set; when
        False, such systems are listed in `missing_secrets` and every request for their
        channels is refused (401) until the variable is set and the hub restarted.
      replays: where used signatures are remembered, shared by every process that admits
        requests (the hub's: `SqliteReplayCache` in the data folder). Required when a system
        authenticates with a signed app key (AdapterConfigError without it).
      clock: wall-clock seconds, for the signature's clock-skew window (tests replace it; the
        replay cache must use the same clock).
      monotonic: monotonic seconds, for the token buckets.
    """

    def __init__(
        self,
        systems: Sequence[SystemConfig],
        *,
        default_max_body_bytes: int,
        trusted_proxies: Iterable[str] = (),
        require_secrets: bool = True,
        replays: ReplayCache | None = None,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
    ) -> None:
        self.systems: dict[str, SystemConfig] = {s.id: s for s in systems}
        self._replays = replays
        self.default_max_body_bytes = default_max_body_bytes
        self.trusted_proxies = frozenset(trusted_proxies)
        self._clock = clock
        self._buckets = {
            s.id: TokenBucket(s.rate_limit.per_second, s.rate_limit.burst, clock=monotonic)
            for s in systems
        }
        problems: list[str] = []
        self.missing_secrets: dict[str, str] = {}
        """System id → why its secret is missing (the variable's name), when not required."""
        self._api_keys: list[tuple[bytes, str]] = []
        # Other headers some systems send their key in, lower-case, each with its systems' keys.
        self._key_headers: dict[str, list[tuple[bytes, str]]] = {}
        self._basic: dict[str, tuple[bytes, str]] = {}
        self._app_keys: dict[str, tuple[str, SystemConfig]] = {}
        self._subjects: dict[frozenset[tuple[str, str]], str] = {}
        for system in systems:
            auth = system.auth
            if auth.scheme == "internal":
                continue  # inside the hub: no endpoint of its own, nothing authenticates as it
            if auth.scheme == "mtls":
                assert auth.client_subject is not None
                self._subjects[subject_attributes(auth.client_subject)] = system.id
                continue
            try:
                secret = auth.secret()
            except SecretNotSet as error:
                problems.append(f"system {system.id}: {error}")
                self.missing_secrets[system.id] = str(error)
                continue
            if auth.scheme == "api_key":
                self._api_keys.append((secret.encode(), system.id))
                header = auth.header.lower()
                if header != API_KEY_HEADER:
                    self._key_headers.setdefault(header, []).append((secret.encode(), system.id))
            elif auth.scheme == "basic":
                assert auth.username is not None
                self._basic[auth.username] = (secret.encode(), system.id)
            else:
                assert auth.app_key is not None
                self._app_keys[auth.app_key] = (secret, system)
        if problems and require_secrets:
            raise AdapterConfigError("; ".join(problems))
        if self._app_keys and replays is None:
            raise AdapterConfigError(
                f"systems {', '.join(sorted(s.id for _, s in self._app_keys.values()))} sign "
                "their requests; the gatekeeper needs a replay cache to let each signature "
                "through once"
            )

    # -- the steps --------------------------------------------------------------------------------

    def body_limit(self, owner: str) -> int:
        """The largest body `owner` may send."""
        return self._system(owner).max_body_bytes or self.default_max_body_bytes

    def check_rate(self, owner: str) -> None:
        """Take a token from `owner`'s bucket; RateLimited (429) when there is none."""
        wait = self._buckets[self._system(owner).id].take()
        if wait > 0:
            raise RateLimited(
                f"system {owner} sends more than its rate limit allows; "
                f"retry after {math.ceil(wait)} s",
                retry_after=wait,
                system=owner,
            )

    def authorize(self, caller: str, owner: str, what: str = "channel") -> None:
        """Forbidden (403) unless `caller` is `owner`: a system uses only its own channels."""
        if caller != owner:
            raise Forbidden(
                f"system {caller} is authenticated but may not use the {what} of system "
                f"{owner}; each system pushes to its own channels and pulls its own outbox",
                system=owner,
            )

    def identify_headers(
        self, headers: Mapping[str, str], *, tls: Mapping[str, Any] | None, client: str | None
    ) -> str | None:
        """The system a header credential names; None if there is none; 401 if it names none."""
        api_key = headers.get(API_KEY_HEADER)
        if api_key is not None:
            return self.identify_key(api_key)
        for header, keys in self._key_headers.items():
            value = headers.get(header)
            if value is None:
                continue
            if header == "authorization":
                scheme, _, value = value.strip().partition(" ")
                if scheme.lower() != "bearer":
                    continue  # not this credential; `authorization_hint` says what was meant
            return self._match_key(value, keys, f"the {header.title()} header")
        authorization = headers.get("authorization", "")
        if authorization[:6].lower() == "basic ":
            return self._by_basic(authorization[6:])
        subject = self._client_subject(headers, tls, client)
        if subject is not None:
            found = self._subjects.get(subject_attributes(subject))
            if found is not None:
                return found
            if not any(h in headers for h in (APP_KEY_HEADER, SIGN_HEADER)):
                raise Unauthenticated(
                    f"the client certificate subject {quoted(subject)} is not configured for any "
                    "system (auth.client_subject)"
                )
        if APP_KEY_HEADER in headers or SIGN_HEADER in headers:
            return self.verify_signature(
                headers.get(APP_KEY_HEADER),
                headers.get(REQUEST_TIME_HEADER),
                headers.get(SIGN_HEADER),
                where="headers",
            )
        return None

    def authorization_hint(self, headers: Mapping[str, str]) -> str | None:
        """What to do about an Authorization header that is no credential: a key sent without
        the `Bearer ` scheme, or under another scheme. None when there is nothing to say (no
        such header, or no system takes its key in Authorization)."""
        value = headers.get("authorization")
        if value is None or "authorization" not in self._key_headers:
            return None
        scheme, space, _ = value.strip().partition(" ")
        if scheme.lower() in ("bearer", "basic"):
            return None
        # Without a space the whole value is the key itself: it is not repeated in the answer.
        said = f"has the scheme {quoted(scheme, limit=20)}" if space else "has no scheme"
        return f"the Authorization header {said}; send the key as 'Authorization: Bearer <key>'"

    def identify_body(self, body: bytes, *, hint: str | None = None) -> str:
        """The system the signed app key in a JSON body names; 401 when there is none.

        `hint` (from `authorization_hint`) leads the answer when there is no credential at all.
        """
        fields: Any = None
        try:
            fields = json.loads(body)
        except (ValueError, RecursionError):
            fields = None
        if not isinstance(fields, dict) or not any(
            name in fields for name in ("appKey", "sign", "requestTime")
        ):
            raise _no_credential(
                "the X-Api-Key header, a client certificate, or a JSON body with appKey, "
                "requestTime and sign (or the X-App-Key, X-Request-Time and X-Sign headers)",
                hint,
            )

        def text(name: str) -> str | None:
            value = fields.get(name)
            if value is None or isinstance(value, bool | dict | list | float):
                return None if value is None else str(value)
            return str(value)

        return self.verify_signature(
            text("appKey"), text("requestTime"), text("sign"), where="body"
        )

    def verify_signature(
        self, app_key: str | None, request_time: str | None, sign: str | None, *, where: str
    ) -> str:
        """The system whose signed app key this is; Unauthenticated (401) saying what is wrong."""
        names = (
            ("appKey", "requestTime", "sign")
            if where == "body"
            else ("X-App-Key", "X-Request-Time", "X-Sign")
        )
        missing = [n for n, v in zip(names, (app_key, request_time, sign), strict=True) if not v]
        if missing:
            raise Unauthenticated(f"signed app key in the {where}: {', '.join(missing)} missing")
        assert app_key is not None and request_time is not None and sign is not None
        known = self._app_keys.get(app_key)
        if known is None:
            raise Unauthenticated(f"appKey {quoted(app_key)} belongs to no configured system")
        secret, system = known
        try:
            sent_at = parse_request_time(request_time)
        except ValueError:
            raise Unauthenticated(
                f"requestTime {quoted(request_time, limit=40)} is neither yyyyMMddHHmmss nor epoch "
                "milliseconds"
            ) from None
        skew = abs(self._clock() - sent_at)
        if skew > system.auth.max_clock_skew_s:
            raise Unauthenticated(
                f"requestTime {request_time} is {skew:.0f} s away from the hub's clock; at most "
                f"{system.auth.max_clock_skew_s} s is accepted (check the sender's clock, and "
                "sign each request anew)"
            )
        expected = expected_sign(app_key, secret, request_time)
        if not hmac.compare_digest(expected.encode(), sign.strip().lower().encode()):
            raise Unauthenticated(
                "sign does not match md5(appKey + secret + requestTime) for appKey "
                f"{quoted(app_key)}"
            )
        # Checked last, so only a genuine signature takes a place in the cache. It is kept until
        # the clock check would refuse it anyway.
        assert self._replays is not None
        if not self._replays.first_use(
            f"{system.id} {expected}", sent_at + system.auth.max_clock_skew_s
        ):
            raise Unauthenticated(
                f"signed app key in the {where}: signature already used within its window "
                f"(appKey {quoted(app_key)}, requestTime {request_time}); sign each request with a "
                "fresh requestTime"
            )
        return system.id

    async def read_body(self, request: Request, owner: str) -> bytes:
        """The body, counted while it streams in; BodyTooLarge (413) past the owner's limit."""
        limit = self.body_limit(owner)
        self.check_declared_length(request.headers.get("content-length"), owner)
        chunks: list[bytes] = []
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise BodyTooLarge(
                    f"the body of system {owner} passed {limit} bytes (its limit) while being "
                    "received; send smaller batches",
                    system=owner,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def check_declared_length(self, declared: str | None, owner: str) -> None:
        """BodyTooLarge (413) when Content-Length says more than the owner's limit."""
        if declared is None:
            return
        limit = self.body_limit(owner)
        if not declared.strip().isdigit():
            raise BadRequest(
                f"Content-Length {quoted(declared, limit=40)} is not a number", system=owner
            )
        if int(declared) > limit:
            raise BodyTooLarge(
                f"the body of system {owner} is {int(declared)} bytes; its limit is {limit} "
                "bytes; send smaller batches",
                system=owner,
            )

    # -- the whole gate ---------------------------------------------------------------------------

    async def admit(self, request: Request, owner: str, *, read_body: bool = True) -> Admission:
        """Run every check in order (see the module docstring); the caller and the body."""
        self.check_rate(owner)
        if owner in self.missing_secrets:
            raise Unauthenticated(
                f"the hub has no credential configured for system {owner}; its requests are "
                "refused until the hub's operators set it",
                system=owner,
            )
        self.check_declared_length(request.headers.get("content-length"), owner)
        caller = await self.header_caller(request)
        if caller is not None:
            self.authorize(caller, owner)
        body = await self.read_body(request, owner) if read_body else b""
        if caller is None:
            # Parsing the body for its signature is cheap next to the limit just enforced, but
            # not free: it runs in a thread so a large body does not stall the event loop.
            hint = self.authorization_hint(request.headers)
            caller = await asyncio.to_thread(self.identify_body, body, hint=hint)
            self.authorize(caller, owner)
        return Admission(caller=caller, body=body)

    async def header_caller(self, request: Request) -> str | None:
        """`identify_headers` for a request (its TLS client certificate and address included).

        A signature in the headers is checked in a thread: remembering it writes to the replay
        cache, which may wait for another process's write, and the event loop must not.
        """
        if APP_KEY_HEADER in request.headers or SIGN_HEADER in request.headers:
            return await asyncio.to_thread(self._header_caller, request)
        return self._header_caller(request)

    def identify(self, request: Request) -> str:
        """The system calling a route that is nobody's channel (e.g. GET /messages/{id}).

        Checks a header credential (no body: such requests have none) and takes a token from
        that system's bucket. A FastAPI dependency as it stands. Raises Unauthenticated (401)
        without a credential or with one nobody owns, RateLimited (429) past the system's rate.
        """
        caller = self._header_caller(request)
        if caller is None:
            raise _no_credential(
                "the X-Api-Key header, a client certificate, or the X-App-Key, X-Request-Time "
                "and X-Sign headers",
                self.authorization_hint(request.headers),
            )
        self.check_rate(caller)
        return caller

    def _header_caller(self, request: Request) -> str | None:
        tls = request.scope.get("extensions", {}).get("tls")
        client = request.client.host if request.client else None
        return self.identify_headers(request.headers, tls=tls, client=client)

    # -- helpers ----------------------------------------------------------------------------------

    def _system(self, system_id: str) -> SystemConfig:
        system = self.systems.get(system_id)
        if system is None:
            raise AdapterConfigError(f"the gatekeeper knows no system {system_id!r}")
        return system

    def identify_key(self, given: str, credential: str = "the X-Api-Key header") -> str:
        """The api_key system whose key `given` is; 401 if none, naming `credential` (what
        carried the key: "the X-Api-Key header", "the key in parameter 'token' of ...")."""
        return self._match_key(given, self._api_keys, credential)

    def _match_key(self, given: str, keys: Sequence[tuple[bytes, str]], credential: str) -> str:
        found: str | None = None
        encoded = given.strip().encode()
        # Compare with every key (no early exit) so timing tells nothing about which matched.
        for key, system_id in keys:
            if hmac.compare_digest(key, encoded):
                found = system_id
        if found is None:
            raise Unauthenticated(f"{credential} matches no configured system's key")
        return found

    def _by_basic(self, encoded: str) -> str:
        try:
            user, colon, password = (
                base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthenticated("the Basic credentials are not base64 of user:password") from None
        known = self._basic.get(user) if colon else None
        # Compare even for an unknown user, so timing does not tell which users exist.
        expected, system_id = known or (b"\0" * 32, "")
        matched = hmac.compare_digest(expected, password.encode())
        if known is None or not matched:
            raise Unauthenticated("the Basic user name and password match no configured system")
        return system_id

    def _client_subject(
        self, headers: Mapping[str, str], tls: Mapping[str, Any] | None, client: str | None
    ) -> str | None:
        if tls is not None and tls.get("client_cert_name"):
            return str(tls["client_cert_name"])
        forwarded = headers.get(CLIENT_SUBJECT_HEADER)
        if forwarded is not None and client is not None and client in self.trusted_proxies:
            return forwarded
        return None


def _no_credential(accepted: str, hint: str | None) -> Unauthenticated:
    """The refusal of a request without a credential: the hint first, when there is one."""
    if hint is not None:
        return Unauthenticated(f"no credential: {hint} (or send {accepted})")
    return Unauthenticated(f"no credential: send {accepted}")


class ClientCertificateH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus the verified client certificate in the ASGI scope.

    Uvicorn does not implement the ASGI TLS extension yet; this adds its `client_cert_name`
    (RFC 4514 subject of the verified client certificate) and `tls_version` to every request of
    a TLS connection, so mTLS can map a certificate to a system. Use it with
    `uvicorn.Config(http=ClientCertificateH11Protocol, ssl_cert_reqs=ssl.CERT_REQUIRED, ...)`.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        certificate = ssl_object.getpeercert()
        tls: dict[str, Any] = {
            "client_cert_name": format_subject(certificate["subject"]) if certificate else None,
            "tls_version": ssl_object.version(),
        }
        inner = self.app

        async def with_tls(scope: Any, receive: Any, send: Any) -> None:
            if scope.get("type") in ("http", "websocket"):
                scope = {**scope, "extensions": {**scope.get("extensions", {}), "tls": tls}}
            await inner(scope, receive, send)

        self.app = with_tls

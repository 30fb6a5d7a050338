"""Who may push and pull: per-system authentication, body size limits and rate limits.

`Gatekeeper.admit(request, owner)` runs, in this order, and keeps nothing of a request it
refuses:

1. the declared Content-Length against the owner's body limit (413);
2. a credential in the headers, if any: the header the owner system's `auth.header` names
   (`X-Api-Key` by default, `Authorization: Bearer` included), HTTP Basic, a verified client
   certificate (mTLS), or `X-App-Key`/`X-Request-Time`/`X-Sign`; it must name a system (401),
   and that system must be the owner (403). A key is accepted only in the header its system is
   configured with, and exactly as configured (no whitespace is trimmed);
3. with no credential in the headers, and only where the channel lets the body carry one (the
   signed app key in a JSON body, a SOAP token parameter or UsernameToken): the body's first
   `CREDENTIAL_PREFIX_BYTES` (64 KiB) at most, where the credential must be found and verify
   (401); nothing more of an unauthenticated body is read;
4. the owner system's token bucket, charged only now that the caller is known (429 with
   Retry-After);
5. the rest of the body, read while counting its bytes (413 as soon as the limit is passed,
   whatever the headers said) within `body_timeout_s` (408 for a body that trickles in).

A failed authentication (401, 403) is counted (`on_refused`, the metric
jghub_unauthenticated_total{channel,reason}), logged in one bounded line, and charged to the
client's address in a bucket of its own: an address whose failures outrun it is answered 429
with Retry-After before its next body is read, while systems that authenticate keep their own
buckets whole. The address is the TCP peer (`jghub serve` runs uvicorn without its
proxy-headers rewrite), so X-Forwarded-For changes nothing here.

A refusal names the credential the client sent (the header, the SOAP parameter, the
UsernameToken) and the rule it broke, never the system a presented key belongs to; an
Authorization header without the `Bearer ` scheme gets a hint saying how to send the key.

SOAP services may carry the key inside the envelope instead: a token parameter, checked by
`Gatekeeper.identify_key`, or a WS-Security UsernameToken (PasswordText only) whose Username must
be the system's `auth.username` and whose Password its key (`Gatekeeper.identify_username_token`).

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
adapters), a SOAP fault (the SOAP push, which passes its own finder of the credential in the
envelope, `adapters.credentials`). The connections themselves (a time limit on request headers,
the verified client certificate) are in `adapters.connections`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo

from starlette.requests import Request

from adapters.credentials import SIGNED_FIELDS, signed_fields
from adapters.errors import (
    AdapterConfigError,
    BadRequest,
    BodyTooLarge,
    Forbidden,
    RateLimited,
    RequestRefused,
    RequestTimedOut,
    Unauthenticated,
)
from adapters.replay_cache import ReplayCache
from standard.errors import quoted
from systems import SecretNotSet, SystemConfig

log = logging.getLogger("adapters.security")

SHANGHAI = ZoneInfo("Asia/Shanghai")
CREDENTIAL_PREFIX_BYTES = 64 * 1024
"""The most bytes of a body read before its sender is known: a credential carried inside the body
(a signed app key in JSON, a SOAP token parameter or UsernameToken) must be found within them."""
DEFAULT_BODY_TIMEOUT_S = 120.0
"""Seconds a request's body may take to arrive, in full, by default (408 after that)."""
API_KEY_HEADER = "x-api-key"
APP_KEY_HEADER = "x-app-key"
REQUEST_TIME_HEADER = "x-request-time"
SIGN_HEADER = "x-sign"
CLIENT_SUBJECT_HEADER = "x-client-subject"
"""Set by a trusted TLS-terminating proxy to the verified client certificate's subject."""

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
        return self._draw(take=True)

    def peek(self) -> float:
        """What `take` would answer, without taking the token."""
        return self._draw(take=False)

    def _draw(self, *, take: bool) -> float:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1.0:
                if take:
                    self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate


class FailedAuthentication:
    """A small token bucket per client address, charged for each failed authentication.

    An address with an empty bucket is refused (429) before its credential is looked for in a
    body. Only the `max_addresses` most recently failing addresses are remembered: a flood from
    many addresses forgets the oldest, whose buckets would have refilled anyway.

    Parameters:
      rate: failures forgiven per second and address.
      burst: failures an address may have in a row before it is refused.
      max_addresses: addresses remembered at most.
      clock: monotonic seconds.
    """

    def __init__(
        self, rate: float, burst: int, *, max_addresses: int = 10_000, clock: Clock = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_addresses = max_addresses
        self._clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, address: str) -> None:
        """RateLimited (429) when `address` has used up its failures."""
        with self._lock:
            bucket = self._buckets.get(address)
        wait = bucket.peek() if bucket is not None else 0.0
        if wait > 0:
            raise RateLimited(
                f"too many failed authentications from {address}; retry after "
                f"{math.ceil(wait)} s with a valid credential",
                retry_after=wait,
            )

    def charge(self, address: str) -> None:
        """Count one failure of `address`."""
        with self._lock:
            bucket = self._buckets.pop(address, None)
            if bucket is None:
                bucket = TokenBucket(self.rate, self.burst, clock=self._clock)
                while len(self._buckets) >= self.max_addresses:
                    self._buckets.popitem(last=False)
            self._buckets[address] = bucket
        bucket.take()


class BodyReader:
    """A request's body, read in two steps within one deadline: a bounded prefix, then the rest.

    Bytes are counted against the owner's limit as they stream in (BodyTooLarge, 413); a body
    not complete `timeout_s` after the first read began is refused (RequestTimedOut, 408).
    """

    def __init__(self, request: Request, owner: str, *, limit: int, timeout_s: float) -> None:
        self.owner = owner
        self.limit = limit
        self.timeout_s = timeout_s
        self._stream: AsyncIterator[bytes] = request.stream()
        self._chunks: list[bytes] = []
        self._received = 0
        self._complete = False
        self._deadline: float | None = None

    @property
    def complete(self) -> bool:
        """True once the whole body has been read."""
        return self._complete

    async def prefix(self, size: int) -> bytes:
        """The body's first `size` bytes at most (all of it when shorter)."""
        await self._read_until(size)
        return b"".join(self._chunks)[:size]

    async def whole(self) -> bytes:
        """The whole body."""
        await self._read_until(None)
        if self._received > self.limit:
            raise self._too_large()
        return b"".join(self._chunks)

    def _too_large(self) -> BodyTooLarge:
        return BodyTooLarge(
            f"the body of system {self.owner} passed {self.limit} bytes (its limit) while being "
            "received; send smaller batches",
            system=self.owner,
        )

    async def _read_until(self, size: int | None) -> None:
        if self._deadline is None:
            self._deadline = asyncio.get_running_loop().time() + self.timeout_s
        try:
            async with asyncio.timeout_at(self._deadline):
                while not self._complete and (size is None or self._received < size):
                    chunk = await anext(self._stream, None)
                    if chunk is None:
                        self._complete = True
                        break
                    self._received += len(chunk)
                    # Before the sender is known only the prefix matters: a chunk past the limit
                    # is refused as unauthenticated, not as too large.
                    if size is None and self._received > self.limit:
                        raise self._too_large()
                    self._chunks.append(chunk)
        except TimeoutError:
            raise RequestTimedOut(
                f"the body did not arrive within {self.timeout_s:g} s (received "
                f"{self._received} bytes); send it at once, or in smaller batches",
                system=self.owner,
            ) from None


BodyCredential = Callable[[bytes, bool], str]
"""A channel's finder of a credential carried inside the body: given the body's first bytes (at
most CREDENTIAL_PREFIX_BYTES) and whether they are the whole body, the system whose credential it
is; Unauthenticated (401) when none is there or it does not verify. Runs in a worker thread."""


@dataclass(frozen=True)
class Admission:
    """A request let in: who sent it (authenticated) and its body (within the limit)."""

    caller: str
    body: bytes
    credential_in_body: bool = False


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


class Gatekeeper:
    """Authentication, body limits and rate limits for every configured system (thread-safe).

    Parameters:
      systems: the configured systems; secrets are read from their `key_env` variables now.
      default_max_body_bytes: the body limit of a system without its own `max_body_bytes`.
      trusted_proxies: TCP peer addresses whose X-Client-Subject header is believed (mTLS
        terminated by a proxy in front of the hub); compared with the socket's address, never
        with X-Forwarded-For.
      require_secrets: raise AdapterConfigError when a secret's variable is not set; when
        False, such systems are listed in `missing_secrets` and every request for their
        channels is refused (401) until the variable is set and the hub restarted.
      replays: where used signatures are remembered, shared by every process that admits
        requests (the hub's: `SqliteReplayCache` in the data folder). Required when a system
        authenticates with a signed app key (AdapterConfigError without it).
      failed_auth_per_second, failed_auth_burst: the bucket of failed authentications each
        client address has (see `FailedAuthentication`); default 20 in a row, then one every
        two seconds.
      body_timeout_s: seconds a body may take to arrive in full (408 after that).
      on_refused: told (channel, reason) of each failed authentication: reason is
        no-credential, bad-credential, forbidden or too-many-failures; channel the owner system
        of the channel asked for ("-" for routes that are nobody's channel).
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
        failed_auth_per_second: float = 0.5,
        failed_auth_burst: int = 20,
        body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
        on_refused: Callable[[str, str], None] | None = None,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
    ) -> None:
        self.systems: dict[str, SystemConfig] = {s.id: s for s in systems}
        self._replays = replays
        self.default_max_body_bytes = default_max_body_bytes
        self.trusted_proxies = frozenset(trusted_proxies)
        self.failures = FailedAuthentication(
            failed_auth_per_second, failed_auth_burst, clock=monotonic
        )
        self.body_timeout_s = body_timeout_s
        self._on_refused = on_refused
        self._clock = clock
        self._buckets = {
            s.id: TokenBucket(s.rate_limit.per_second, s.rate_limit.burst, clock=monotonic)
            for s in systems
        }
        problems: list[str] = []
        self.missing_secrets: dict[str, str] = {}
        """System id → why its secret is missing (the variable's name), when not required."""
        # Every api_key system's key, for a key carried inside a message (SOAP token, WS-Security).
        self._api_keys: list[tuple[bytes, str]] = []
        # Header (lower-case) → the keys of the systems configured to send their key in it: a key
        # is accepted in its own system's header only.
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
        """Forbidden (403) unless `caller` is `owner`: a system uses only its own channels.

        The refusal names no system: whose the credential is stays unsaid."""
        if caller != owner:
            raise Forbidden(
                f"the credential is valid but not for this {what}; each system pushes to its "
                "own channels and pulls its own outbox with its own credential",
                system=owner,
            )

    def identify_headers(
        self, headers: Mapping[str, str], *, tls: Mapping[str, Any] | None, client: str | None
    ) -> str | None:
        """The system a header credential names; None if there is none; 401 if it names none."""
        if API_KEY_HEADER in headers:
            keys = self._key_headers.get(API_KEY_HEADER, [])
            return self._match_key(headers[API_KEY_HEADER], keys, "the X-Api-Key header")
        for header, keys in self._key_headers.items():
            if header == API_KEY_HEADER:
                continue
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

    def identify_body(self, body: bytes, *, hint: str | None = None, whole: bool = True) -> str:
        """The system the signed app key in a JSON body names; 401 when there is none.

        `body` is the whole body, or (`whole` False) its first bytes: then appKey, requestTime
        and sign are looked for among the members of the top-level object that those bytes
        hold entirely, so a sender puts them before its records. `hint` (from
        `authorization_hint`) leads the answer when there is no credential at all.
        """
        fields: Any = None
        try:
            fields = json.loads(body) if whole else signed_fields(body)
        except (ValueError, RecursionError):
            fields = None
        if not isinstance(fields, dict) or not any(name in fields for name in SIGNED_FIELDS):
            within = "" if whole else f" within the body's first {len(body)} bytes"
            raise _no_credential(
                "the X-Api-Key header, a client certificate, or a JSON body with appKey, "
                f"requestTime and sign{within} (or the X-App-Key, X-Request-Time and X-Sign "
                "headers)",
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

    def body_reader(self, request: Request, owner: str) -> BodyReader:
        """A reader of the request's body within the owner's limit and the body time limit."""
        return BodyReader(
            request, owner, limit=self.body_limit(owner), timeout_s=self.body_timeout_s
        )

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

    async def admit(
        self,
        request: Request,
        owner: str,
        *,
        read_body: bool = True,
        in_body: BodyCredential | Literal["signed_app_key"] | None = "signed_app_key",
        accepted: str | None = None,
    ) -> Admission:
        """Run every check in order (see the module docstring); the caller and the body.

        `in_body` finds a credential inside the body: the signed app key of a JSON body (the
        default), the channel's own finder (`BodyCredential`), or None when the channel takes
        its credential in the headers only; a request without one is then refused saying
        `accepted` (the credentials the channel takes).
        """
        address = self.client_address(request)
        reader = self.body_reader(request, owner)
        try:
            if owner in self.missing_secrets:
                raise Unauthenticated(
                    f"the hub has no credential configured for system {owner}; its requests "
                    "are refused until the hub's operators set it",
                    system=owner,
                )
            self.check_declared_length(request.headers.get("content-length"), owner)
            caller = await self.header_caller(request)
            if caller is None:
                caller = await self._caller_in_body(request, owner, reader, in_body, accepted)
                credential_in_body = True
            else:
                credential_in_body = False
            self.authorize(caller, owner)
        except (Unauthenticated, Forbidden, RateLimited) as refused:
            # Only the failed-authentication limit raises RateLimited before check_rate.
            raise self.refused(owner, address, refused) from None
        self.check_rate(owner)
        body = await reader.whole() if read_body else b""
        return Admission(caller=caller, body=body, credential_in_body=credential_in_body)

    async def _caller_in_body(
        self,
        request: Request,
        owner: str,
        reader: BodyReader,
        in_body: BodyCredential | Literal["signed_app_key"] | None,
        accepted: str | None,
    ) -> str:
        hint = self.authorization_hint(request.headers)
        if in_body is None:
            raise _no_credential(accepted or "a credential in the headers", hint)
        # Looking into a body costs a read and a parse: an address that keeps failing is
        # refused before that.
        self.failures.check(self.client_address(request))
        prefix = await reader.prefix(CREDENTIAL_PREFIX_BYTES)
        whole = reader.complete
        if in_body == "signed_app_key":
            # Parsing runs in a thread so that a large prefix does not stall the event loop.
            return await asyncio.to_thread(self.identify_body, prefix, hint=hint, whole=whole)
        return await asyncio.to_thread(in_body, prefix, whole)

    def refused(self, channel: str, address: str, error: RequestRefused) -> RequestRefused:
        """Count and log a failed authentication (`error`), and charge it to `address` unless it
        is the failed-authentication limit's own 429; `error`, to be raised.

        The log line holds at most 200 characters of the reason, and never the body.
        """
        reason = {
            "forbidden": "forbidden",
            "rate-limited": "too-many-failures",
        }.get(error.kind, "no-credential" if error.reason.startswith("no credential") else "")
        reason = reason or "bad-credential"
        if reason != "too-many-failures":
            self.failures.charge(address)
        log.info(
            "refused %s for channel %s from %s: %.200s", reason, channel, address, error.reason
        )
        if self._on_refused is not None:
            self._on_refused(channel, reason)
        return error

    def client_address(self, request: Request) -> str:
        """The TCP peer's address (never a forwarded one), for the failed-authentication limit."""
        return request.client.host if request.client else "unknown"

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
        address = self.client_address(request)
        try:
            caller = self._header_caller(request)
            if caller is None:
                raise _no_credential(
                    "the X-Api-Key header, a client certificate, or the X-App-Key, "
                    "X-Request-Time and X-Sign headers",
                    self.authorization_hint(request.headers),
                )
        except Unauthenticated as refused:
            raise self.refused("-", address, refused) from None
        self.check_rate(caller)
        return caller

    def _header_caller(self, request: Request) -> str | None:
        tls = request.scope.get("extensions", {}).get("tls")
        return self.identify_headers(request.headers, tls=tls, client=self.client_address(request))

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

    def identify_username_token(self, username: str | None, password: str) -> str:
        """The api_key system whose key is `password` and whose `auth.username` is `username`
        (a WS-Security UsernameToken); 401 otherwise, the same answer whichever part is wrong."""
        credential = "the WS-Security UsernameToken"
        try:
            system_id = self._match_key(password, self._api_keys, credential)
        except Unauthenticated:
            system_id = None
        expected = self.systems[system_id].auth.username if system_id is not None else None
        # Compared even without a match, so timing does not tell a right password from a wrong one.
        same_user = hmac.compare_digest(
            (expected or "\0").encode(), (username if username is not None else "").encode()
        )
        if system_id is None or expected is None or not same_user:
            raise Unauthenticated(
                f"{credential}'s Username and Password match no configured system's user name "
                "and key"
            )
        return system_id

    def _match_key(self, given: str, keys: Sequence[tuple[bytes, str]], credential: str) -> str:
        found: str | None = None
        # Exactly as sent: a key with whitespace around it is not the key.
        encoded = given.encode()
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

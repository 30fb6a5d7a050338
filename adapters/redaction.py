"""Credentials out of everything the hub stores: quarantine, journal, dead letters and logs.

What a system sends may carry its credential inside the payload: the token parameter of an
ASMX operation, a WS-Security UsernameToken's Password and Nonce, the `sign` of a signed app key.
A payload refused before or after authentication is kept in the quarantine, and a target's
error answer (quoted in a dead letter's reason) may echo the token it was sent. `Redaction`
replaces, with the fixed marker `***` and nothing else changed:

- **by name**, in any payload: the text of XML elements and the string values of JSON members
  named `Password`, `Nonce`, `sign`, `secret`, `appSecret` (any case), or named as a credential
  by the configuration (soap_push `token_parameter`, soap_sender `secret_parameters`, rest_poller
  `token.secret_fields`). This works on bytes, so a broken envelope is redacted too, and the
  rest of the payload stays byte for byte as it came (an operator can read it, a fixed mapping
  can still translate it);
- **by value**, in payloads and texts (reasons, log lines): every secret the configuration
  names through an environment variable (each system's `auth.key_env`, every `*_env` option and
  every variable of `secret_parameters`/`secret_fields`), raw and in the forms it travels in
  (base64, HTTP Basic's base64 of `user:password`, URL- and XML-escaped).

Values shorter than `MIN_SECRET_CHARS` are not searched by value (they would blank out
unrelated text); they are still redacted by name.

    redaction = Redaction.of(systems)          # once, from the configuration and environment
    broker.quarantine(redaction.payload(body), redaction.text(reason), ...)
    install_log_redaction(redaction)           # every log record of the process, from now on
"""

from __future__ import annotations

import base64
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from html import escape
from typing import Any
from urllib.parse import quote, quote_plus

from systems import SystemConfig

MARKER = "***"
MIN_SECRET_CHARS = 6
CREDENTIAL_FIELDS = frozenset({"password", "nonce", "sign", "secret", "appsecret"})
"""Names (compared without case) whose values are credentials wherever they appear."""
_SECRET_NAME_MAPS = ("secret_parameters", "secret_fields")
"""Options mapping a field or parameter name to the environment variable holding its value."""


class Redaction:
    """Replaces credentials, by field name and by known value, with `MARKER`.

    Parameters:
      secrets: the secret values to find anywhere (shorter than MIN_SECRET_CHARS: ignored).
      fields: more field names whose values are credentials (besides CREDENTIAL_FIELDS).
    """

    def __init__(self, secrets: Iterable[str] = (), fields: Iterable[str] = ()) -> None:
        names = sorted({*CREDENTIAL_FIELDS, *(f.lower() for f in fields)})
        alternatives = "|".join(re.escape(n) for n in names).encode()
        # The element's text up to its end tag, CDATA included; the tag keeps its prefix.
        self._xml = re.compile(
            rb"(<(?:[\w.-]+:)?(?:" + alternatives + rb")(?:\s[^>]*)?(?<!/)>)"
            rb"((?:<!\[CDATA\[.*?\]\]>|[^<])+)",
            re.IGNORECASE | re.DOTALL,
        )
        self._json = re.compile(
            rb'("(?:' + alternatives + rb')"\s*:\s*")((?:[^"\\]|\\.)*)(")', re.IGNORECASE
        )
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) >= MIN_SECRET_CHARS:
                forms.update(_travelling_forms(secret))
        # Longest first, so a secret's base64 is not cut short by a secret it contains.
        ordered = sorted(forms, key=len, reverse=True)
        self._values = [form.encode() for form in ordered]

    @classmethod
    def of(
        cls, systems: Iterable[SystemConfig], environ: Mapping[str, str] = os.environ
    ) -> Redaction:
        """The redaction of every credential `systems` configure, read from `environ`."""
        secrets: list[str] = []
        fields: set[str] = set()
        for system in systems:
            auth = system.auth
            secret = environ.get(auth.key_env) if auth.key_env else None
            if secret:
                secrets.append(secret)
                if auth.username:
                    basic = f"{auth.username}:{secret}".encode()
                    secrets.append(base64.b64encode(basic).decode())
            options: list[Mapping[str, Any]] = [c.options for c in system.inbound]
            if system.outbound is not None:
                options.append(system.outbound.options)
            for found in options:
                _credentials_in(found, environ, secrets.append, fields.add)
        return cls(secrets, fields)

    def payload(self, body: bytes) -> bytes:
        """`body` with every credential replaced by the marker, the rest unchanged."""
        marker = MARKER.encode()
        body = self._xml.sub(lambda m: m.group(1) + marker, body)
        body = self._json.sub(lambda m: m.group(1) + marker + m.group(3), body)
        for value in self._values:
            body = body.replace(value, marker)
        return body

    def text(self, text: str) -> str:
        """`text` (a reason, a log line) redacted as a payload would be."""
        if not text:
            return text
        return self.payload(text.encode("utf-8", "surrogatepass")).decode("utf-8", "surrogatepass")


def _travelling_forms(secret: str) -> set[str]:
    """The secret as it may be written where it travels: raw, base64, URL- and XML-escaped."""
    raw = secret.encode()
    return {
        secret,
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
        quote(secret, safe=""),
        quote_plus(secret),
        escape(secret, quote=True),
    }


def _credentials_in(
    options: Mapping[str, Any],
    environ: Mapping[str, str],
    secret: Callable[[str], None],
    field: Callable[[str], None],
) -> None:
    """Report the secrets an adapter's options name, and the fields that carry them."""
    for name, value in options.items():
        if name == "token_parameter" and isinstance(value, str):
            field(value)
        elif name.endswith("_env") and isinstance(value, str):
            found = environ.get(value)
            if found:
                secret(found)
        elif name in _SECRET_NAME_MAPS and isinstance(value, Mapping):
            for carried_in, variable in value.items():
                field(str(carried_in))
                found = environ.get(str(variable))
                if found:
                    secret(found)
        elif isinstance(value, Mapping):
            _credentials_in(value, environ, secret, field)


def install_log_redaction(redaction: Redaction) -> None:
    """Redact every log record this process makes from now on (message and traceback).

    Done where records are made (the record factory), not in a handler, so it holds for every
    handler and logger, those added later included; a later call replaces the redaction.
    """
    global _LOG_REDACTION
    _LOG_REDACTION = redaction
    if not isinstance(logging.getLogRecordFactory(), _RedactingFactory):
        logging.setLogRecordFactory(_RedactingFactory(logging.getLogRecordFactory()))


_LOG_REDACTION: Redaction | None = None


class _RedactingFactory:
    """A log record factory that redacts what the record will print."""

    def __init__(self, make: Callable[..., logging.LogRecord]) -> None:
        self._make = make

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = self._make(*args, **kwargs)
        redaction = _LOG_REDACTION
        if redaction is None:
            return record
        try:
            message = record.getMessage()
        except Exception:
            # A message whose arguments do not fit it: the handler reports that as logging
            # always has (handleError), not the code that logged.
            return record
        redacted = redaction.text(message)
        if redacted != message:
            # Only then: a record with nothing to hide keeps its arguments for whoever reads them.
            record.msg, record.args = redacted, ()
        if record.exc_info and record.exc_info[0] is not None:
            # The handler's formatter uses exc_text when it is set: the traceback, redacted.
            record.exc_text = redaction.text(logging.Formatter().formatException(record.exc_info))
        return record

"""Operator accounts: who may use the operators' HTTP routes, in which role, proven by which secret.

    accounts = load_operators(Path("/etc/jghub/operators.yaml"))  # OperatorsFileError: file:line
    gate = OperatorGate(accounts)
    operator = gate.authenticate("ops-li", secret, address="10.0.0.7")  # OperatorRefused: 401/429
    operator.may(Role.OPERATOR)                                          # False for a reader
    hash_secret("correct horse battery staple")     # scrypt$32768$8$3$<salt>$<hash>, to paste

The accounts file (JGHUB_OPERATORS_FILE):

    operators:
      - name: ops-li
        role: operator            # reader | operator
        secret_hash: "scrypt$32768$8$3$…"   # `jghub operators hash` prints it

Roles: a `reader` lists and inspects dead letters (history, reasons, ids) but never sees a
dead letter's body; an `operator` also reads bodies and replays. Payloads carry personal data
(names, ID numbers of parties to a penalty case), so reading one is an operator's act,
journalled. The quarantine is the exception: finding what a sender got wrong is a reader's work,
so a reader reads its payloads (each read journalled under the account); releasing and
discarding them are an operator's (`monitor.quarantine_api`).

Secrets are never stored: each account holds a self-describing scrypt hash
`scrypt$N$r$p$salt$hash` (salt and hash base64, hashlib's scrypt from OpenSSL). The default
N=2^15, r=8, p=3 is one of OWASP's equivalent scrypt settings (32 MiB, about 0.3 s on a small
server); weaker hashes are refused when the file is loaded. A check runs scrypt on purpose, so
the gate keeps a successful check for CACHE_S seconds (a console polling every few seconds costs
one scrypt per minute), runs it against a stand-in hash for an unknown name (an answer's time does
not tell which names exist), and refuses a client address for the rest of a window once it
failed FAILED_LOGINS_LIMIT times in it (429 before any scrypt runs: wrong secrets cannot make the
hub burn its CPU), and runs at most CONCURRENT_CHECKS checks at once (nor exhaust its memory).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mappings import MappingError
from mappings.yamlsource import load_yaml
from monitor.errors import OperatorRefused, OperatorsFileError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 3
"""The cost of a new hash (OWASP: N=2^15, r=8, p=3 is as strong as N=2^17, r=8, p=1)."""
MIN_SCRYPT_WORK = SCRYPT_N * SCRYPT_R * SCRYPT_P
"""The least N·r·p a stored hash may have: weaker ones are refused when the file is loaded."""
MAX_SCRYPT_MEMORY = 256 * 1024 * 1024
"""The most memory (128·r·N bytes) one check may take: a stored hash cannot exhaust the host."""
MAX_SCRYPT_P = 16
SALT_BYTES, HASH_BYTES = 16, 32
MIN_SECRET_CHARS = 12
NAME_PATTERN = r"^[a-z][a-z0-9._-]{1,62}$"

CACHE_S = 60.0
CACHE_ENTRIES = 1024
FAILED_LOGINS_LIMIT = 10
FAILED_LOGINS_WINDOW_S = 300.0
FAILED_LOGINS_ADDRESSES = 10_000
CONCURRENT_CHECKS = 4
"""scrypt checks at once (32 MiB each): many addresses guessing cannot exhaust memory."""


class Role(StrEnum):
    """What an operator account may do (each role may do everything of the roles before it)."""

    READER = "reader"
    OPERATOR = "operator"


_RANK = {Role.READER: 0, Role.OPERATOR: 1}


@dataclass(frozen=True)
class ScryptHash:
    """A stored secret hash: `scrypt$N$r$p$salt$hash` (salt and hash in base64)."""

    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    @classmethod
    def parse(cls, text: str) -> ScryptHash:
        """Read a stored hash; ValueError saying what is wrong (and what to do) otherwise."""
        parts = text.strip().split("$")
        if len(parts) != 6 or parts[0] != "scrypt":
            raise ValueError(
                "secret_hash must read scrypt$N$r$p$salt$hash, as `jghub operators hash` prints it"
            )
        try:
            n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
            salt = base64.b64decode(parts[4], validate=True)
            digest = base64.b64decode(parts[5], validate=True)
        except ValueError:
            raise ValueError(
                "secret_hash has N, r, p that are not numbers or a salt or hash that is not "
                "base64; paste the line `jghub operators hash` prints"
            ) from None
        found = cls(n, r, p, salt, digest)
        found.check_strength()
        return found

    def check_strength(self) -> None:
        if self.n < 2 or self.n & (self.n - 1) or min(self.r, self.p) < 1:
            raise ValueError(f"scrypt N must be a power of 2 and r, p at least 1 (got {self})")
        if self.n * self.r * self.p < MIN_SCRYPT_WORK or len(self.salt) < SALT_BYTES:
            raise ValueError(
                f"the hash is too weak (N·r·p below {MIN_SCRYPT_WORK} or a salt under "
                f"{SALT_BYTES} bytes: {self}); hash the secret again with `jghub operators hash`"
            )
        if 128 * self.r * self.n > MAX_SCRYPT_MEMORY or self.p > MAX_SCRYPT_P:
            raise ValueError(
                f"the hash would take more than {MAX_SCRYPT_MEMORY // 2**20} MiB or p above "
                f"{MAX_SCRYPT_P} per check ({self}); hash it with `jghub operators hash`"
            )
        if len(self.digest) < 16:
            raise ValueError("the hash part is shorter than 16 bytes; paste the whole line")

    def matches(self, secret: str) -> bool:
        """Whether `secret` hashes to this (compared in constant time)."""
        return hmac.compare_digest(
            _scrypt(secret, self.salt, self.n, self.r, self.p, len(self.digest)), self.digest
        )

    def __str__(self) -> str:
        salt = base64.b64encode(self.salt).decode()
        digest = base64.b64encode(self.digest).decode()
        return f"scrypt${self.n}${self.r}${self.p}${salt}${digest}"


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        secret.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=MAX_SCRYPT_MEMORY + 2**20,
        dklen=length,
    )


def hash_secret(secret: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """The line to store for `secret`: scrypt with a fresh random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    stored = ScryptHash(n, r, p, salt, _scrypt(secret, salt, n, r, p, HASH_BYTES))
    stored.check_strength()
    return str(stored)


class OperatorAccount(BaseModel):
    """One operator: a person's name, a role and the hash of their secret."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=NAME_PATTERN,
        description="The person's account name, journalled with everything they do (ops-li).",
    )
    role: Role = Field(
        description="reader: lists and inspects dead letters, no payload bodies; operator: also "
        "reads bodies and replays."
    )
    secret_hash: str = Field(
        description="scrypt$N$r$p$salt$hash, as `jghub operators hash` prints it."
    )

    @field_validator("secret_hash")
    @classmethod
    def _hash_parses(cls, value: str) -> str:
        ScryptHash.parse(value)
        return value.strip()


class OperatorAccounts(BaseModel):
    """The accounts file: every operator who may use the HTTP routes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    operators: list[OperatorAccount] = Field(
        min_length=1, description="The operator accounts; names are unique."
    )

    @model_validator(mode="after")
    def _unique(self) -> OperatorAccounts:
        names = [a.name for a in self.operators]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"operator names must be unique; repeated: {', '.join(repeated)}")
        return self


def load_operators(path: Path | str) -> OperatorAccounts:
    """Read and validate the accounts file; OperatorsFileError with file:line otherwise."""
    try:
        document = load_yaml(Path(path))
    except MappingError as error:
        raise OperatorsFileError(f"operator accounts: {error}") from None
    try:
        return OperatorAccounts.model_validate(document.data or {})
    except ValidationError as error:
        raise OperatorsFileError(f"operator accounts: {document.validation_error(error)}") from None


@dataclass(frozen=True)
class Operator:
    """An authenticated operator: the account's name is who the journal says acted."""

    name: str
    role: Role

    def may(self, role: Role) -> bool:
        return _RANK[self.role] >= _RANK[role]


class FailedLogins:
    """Failed logins per client address in a sliding window (thread-safe, bounded memory)."""

    def __init__(
        self,
        limit: int = FAILED_LOGINS_LIMIT,
        window_s: float = FAILED_LOGINS_WINDOW_S,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def wait_s(self, address: str) -> float:
        """Seconds `address` must wait before it may try again; 0 when it may now."""
        with self._lock:
            failures = self._recent(address)
            if len(failures) < self.limit:
                return 0.0
            return max(0.0, failures[-self.limit] + self.window_s - self._clock())

    def failed(self, address: str) -> None:
        with self._lock:
            self._recent(address).append(self._clock())
            self._failures.move_to_end(address)
            while len(self._failures) > FAILED_LOGINS_ADDRESSES:
                self._failures.popitem(last=False)

    def _recent(self, address: str) -> deque[float]:
        failures = self._failures.setdefault(address, deque(maxlen=self.limit))
        horizon = self._clock() - self.window_s
        while failures and failures[0] <= horizon:
            failures.popleft()
        return failures


class OperatorGate:
    """Checks operators' names and secrets (see the module docstring); thread-safe.

    Parameters:
      accounts: the operator accounts.
      failed_logins: the per-address limit of failed logins (default: 10 in 5 minutes).
      cache_s: how long a successful check is reused without running scrypt again.
    """

    def __init__(
        self,
        accounts: OperatorAccounts,
        *,
        failed_logins: FailedLogins | None = None,
        cache_s: float = CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.accounts = {a.name: a for a in accounts.operators}
        self._hashes = {a.name: ScryptHash.parse(a.secret_hash) for a in accounts.operators}
        # An unknown name is checked against this, so it costs what a known one costs.
        self._stand_in = ScryptHash.parse(hash_secret(secrets.token_urlsafe(16)))
        self.failed_logins = failed_logins or FailedLogins(clock=clock)
        self.cache_s = cache_s
        self._clock = clock
        # The cache is keyed by a keyed hash of name and secret, never the secret itself.
        self._cache_key = secrets.token_bytes(32)
        self._verified: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()
        self._checking = threading.BoundedSemaphore(CONCURRENT_CHECKS)

    def authenticate(self, name: str, secret: str, *, address: str) -> Operator:
        """The operator `name` if `secret` is theirs; OperatorRefused (401, or 429 for an
        address that failed too often) otherwise."""
        wait = self.failed_logins.wait_s(address)
        if wait > 0:
            raise OperatorRefused(
                429,
                f"{self.failed_logins.limit} failed operator logins from {address} within "
                f"{self.failed_logins.window_s:.0f} s; try again in {wait:.0f} s",
                retry_after_s=wait,
            )
        account = self.accounts.get(name)
        if account is not None and self._recently_verified(name, secret):
            return Operator(account.name, account.role)
        stored = self._hashes.get(name, self._stand_in)
        with self._checking:
            matched = stored.matches(secret)
        if not matched or account is None:
            self.failed_logins.failed(address)
            raise OperatorRefused(
                401, "unknown operator or wrong secret; check the name and the secret"
            )
        self._remember(name, secret)
        return Operator(account.name, account.role)

    def _token(self, name: str, secret: str) -> bytes:
        return hmac.digest(self._cache_key, f"{name}\0{secret}".encode(), "sha256")

    def _recently_verified(self, name: str, secret: str) -> bool:
        token = self._token(name, secret)
        with self._lock:
            until = self._verified.get(token)
            return until is not None and until > self._clock()

    def _remember(self, name: str, secret: str) -> None:
        token = self._token(name, secret)
        with self._lock:
            self._verified[token] = self._clock() + self.cache_s
            self._verified.move_to_end(token)
            while len(self._verified) > CACHE_ENTRIES:
                self._verified.popitem(last=False)

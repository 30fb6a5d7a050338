"""The token a console form carries, so that only a page the hub served can make an operator act.

    tokens = FormTokens(gate)
    token = tokens.issue(operator)                     # put in the form's hidden field
    tokens.check(operator, token)                      # CsrfRefused (403) otherwise

Why a token: the console authenticates with HTTP Basic, which the browser sends by itself with
every request to the hub, so a page on another site could post a replay form in the operator's
name. That page cannot read the hub's pages (the same-origin policy), so it cannot know a token.

What it is: OWASP's HMAC-based token pattern, with the signing and the expiry of itsdangerous
(Pallets, the library Flask and Flask-WTF sign their sessions and CSRF tokens with), rather than
a signature of our own. The token signs the operator's account name and the time it was issued;
the key is the account's stored secret hash. So a token is tied to the credential: it is good
only for the account it was issued to, only while that account keeps its secret (a new secret
voids every token issued before), and on every `serve` host that has the same operators file,
without a session store or a secret of its own to configure. The hash never leaves the hub.
"""

from __future__ import annotations

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from monitor.console_tables import duration
from monitor.errors import OperatorRefused
from monitor.operators import Operator, OperatorGate

TOKEN_MAX_AGE_S = 8 * 3600
"""How long a form stays good: a working day, after which the page is loaded again."""
SALT = "jghub-console-form"
"""Separates these signatures from any other use of the same key."""


class CsrfRefused(OperatorRefused):
    """A console form came without a good token for the account that sent it (403)."""

    def __init__(self, why: str) -> None:
        super().__init__(
            403, f"{why}; load the page again from the hub and send the form from there"
        )


class FormTokens:
    """Issues and checks the tokens of the console's forms (see the module docstring)."""

    def __init__(self, gate: OperatorGate, *, max_age_s: int = TOKEN_MAX_AGE_S) -> None:
        self.gate = gate
        self.max_age_s = max_age_s

    def _signer(self, operator: Operator) -> URLSafeTimedSerializer:
        key = self.gate.accounts[operator.name].secret_hash
        return URLSafeTimedSerializer(key, salt=SALT)

    def issue(self, operator: Operator) -> str:
        """A token for a form `operator` is shown."""
        return self._signer(operator).dumps(operator.name)

    def check(self, operator: Operator, token: str | None) -> None:
        """Return when `token` was issued to `operator` within the last max_age_s seconds;
        CsrfRefused saying which rule failed otherwise."""
        if not token:
            raise CsrfRefused("the form carries no token")
        try:
            name = self._signer(operator).loads(token, max_age=self.max_age_s)
        except SignatureExpired:
            raise CsrfRefused(
                f"the form's token is older than {duration(self.max_age_s)}"
            ) from None
        except BadSignature:
            raise CsrfRefused("the form's token was not issued to this account") from None
        if name != operator.name:
            raise CsrfRefused("the form's token was not issued to this account")

"""How the console's pages are rendered: Jinja2 templates shipped with the package, escaped.

Every value a page shows may come from a sender (ids, reasons, departments, payloads), so:

- autoescape is on for every template: `<script>` in a reason is shown as the text `<script>`;
- every expression's output also passes `monitor.literal.visible`, as on the terminal: control,
  line-breaking and bidi characters are shown as their escapes, so a right-to-left override in
  a department's name cannot make a row read backwards;
- an undefined name in a template is an error, not an empty cell (StrictUndefined);
- each page says, in its headers, that it runs no script and loads nothing from elsewhere
  (Content-Security-Policy), is not framed, is not kept in a cache (it shows personal data), and
  that the ids in its address are not sent to another site (Referrer-Policy).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.responses import Response

from monitor.console_tables import duration, local, percent
from monitor.literal import visible

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _shown(value: Any) -> Any:
    """What `{{ value }}` prints: strings made visible (see the module docstring), None as ''."""
    if value is None:
        return ""
    return visible(value) if isinstance(value, str) else value


def shanghai(moment: datetime | str | None) -> str:
    """A moment as Shanghai wall time; the ledger's ISO 8601 strings too; '—' for none."""
    if moment is None or moment == "":
        return "—"
    return local(datetime.fromisoformat(moment) if isinstance(moment, str) else moment)


def environment() -> Environment:
    """The console's Jinja2 environment: its templates, escaped, strict, with its filters."""
    env = Environment(
        loader=PackageLoader("console", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        finalize=_shown,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(local=shanghai, duration=duration, percent=percent)
    return env


class Pages:
    """Renders the console's templates into responses that carry the security headers."""

    def __init__(self) -> None:
        self.templates = Jinja2Templates(env=environment())

    def render(
        self, request: Request, name: str, context: dict[str, Any], *, status: int = 200
    ) -> Response:
        return self.templates.TemplateResponse(
            request, name, context, status_code=status, headers=SECURITY_HEADERS
        )

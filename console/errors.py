"""The console's errors as pages: what failed, what the operator can do, the status kept.

    router = APIRouter(prefix="/console", route_class=error_pages(pages))

Every console route is served through `ConsolePageRoute`, which catches what its handler (its
dependencies included: the operator's account, the form token) raises and renders
`error.html` in the console's layout instead: an HTTPException with its status and headers
(WWW-Authenticate, Retry-After), a query that does not parse (400), and the store or the journal
that does not answer (503, Retry-After). The API's routes keep their own answers (JSON, decided
app-wide in `hub.app`); nothing here is installed on the app, so the console's pages stay pages
whatever those become.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.responses import Response

from console.templating import Pages
from monitor.errors import JournalUnavailable
from store import StoreUnavailable

log = logging.getLogger("console.errors")

RETRY_AFTER_S = 5
"""Seconds a page the store could not serve asks the browser to wait (as the API answers)."""


@dataclass(frozen=True)
class Advice:
    """What an error status means to an operator, and what they can do about it."""

    title: str
    todo: str


ADVICE = {
    400: Advice("The request was not understood", "Correct what is named above and send again."),
    401: Advice(
        "Sign in",
        "Give the name and secret of an operator account (HTTP Basic: the browser asks).",
    ),
    403: Advice(
        "Not allowed",
        "Reading is open to readers; replaying, releasing and discarding need the operator "
        "role: ask an operator, or sign in with an operator account. A refused form token: "
        "open the page again and send its form from there.",
    ),
    404: Advice(
        "Not found",
        "Check the id or the name in the address: it may have been replayed, released, "
        "discarded or removed since. The lists show what is there now.",
    ),
    409: Advice(
        "Already settled",
        "Someone acted on it first: open it again to see who did what, and when.",
    ),
    503: Advice(
        "Unavailable for now",
        "Nothing was changed. Try again in a few seconds; if it lasts, /ready says what the "
        "hub is waiting for (its store, its bus), and the hub's log says why.",
    ),
}
OTHER = Advice("Something went wrong", "Try again; if it lasts, the hub's log says why.")


def error_pages(pages: Pages) -> type[APIRoute]:
    """The route class of the console's routes: their errors rendered by `pages`."""

    class ConsolePageRoute(APIRoute):
        """A console route whose errors are pages (see the module docstring)."""

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            serve = super().get_route_handler()

            async def served(request: Request) -> Response:
                try:
                    return await serve(request)
                except HTTPException as error:
                    return error_page(pages, request, error.status_code, str(error.detail),
                                      error.headers)  # fmt: skip
                except RequestValidationError as error:
                    return error_page(pages, request, 400, _invalid(error))
                except (StoreUnavailable, JournalUnavailable) as error:
                    log.warning("%s %s: %s", request.method, request.url.path, error)
                    what = "store (its database)" if isinstance(error, StoreUnavailable) else (
                        "journal"
                    )  # fmt: skip
                    why = f"the hub's {what} does not answer, so this page cannot be shown"
                    headers = {"Retry-After": str(RETRY_AFTER_S)}
                    return error_page(pages, request, 503, why, headers)

            return served

    return ConsolePageRoute


def error_page(
    pages: Pages,
    request: Request,
    status: int,
    why: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The error page: the console's layout, `why`, what to do, with `status` and `headers`."""
    advice = ADVICE.get(status, OTHER)
    context = {"status": status, "why": why, "advice": advice, "who": None}
    response = pages.render(request, "error.html", context, status=status)
    response.headers.update(headers or {})
    return response


def _invalid(error: RequestValidationError) -> str:
    """A query or form that does not parse, field by field."""
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc'][1:])}: {problem['msg']}"
        for problem in error.errors()
    )

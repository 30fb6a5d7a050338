"""督办通知 for the tests: the departments' notice samples, grown into fresh notices.

Each department folder holds two `notice_push` samples, a due-soon task reminder addressed to
one of its departments and an overdue warning escalation addressed to the warning's issuer. A
test that needs a notice of its own takes one and gives it a fresh id, so what a receiver got
can be told apart from earlier runs.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from mappings import SYSTEMS_ROOT
from standard.datasets.supervision_notice import SupervisionNotice
from standard.envelope import Envelope

NOTICE_TYPE = "notice_push"
"""The message type under which every department renders a supervision notice."""
REMINDER_SAMPLE = "due-soon-task.json"
ESCALATION_SAMPLE = "overdue-warning.json"
CENTRE_SOURCE = "330000/zhzf"
"""The envelope source of the samples: the provincial centre that sends the notices."""


def notice_sample(system: str, name: str = REMINDER_SAMPLE) -> dict[str, Any]:
    """The `data` of `system`'s notice sample `name` (a SupervisionNotice as JSON)."""
    path = SYSTEMS_ROOT / system / "samples" / NOTICE_TYPE / name
    document = json.loads(path.read_text(encoding="utf-8"))
    data: dict[str, Any] = document["data"]
    return data


def fresh_notice(system: str, name: str = REMINDER_SAMPLE, **changes: Any) -> Envelope:
    """`system`'s sample `name` as an inserted notice with a new notice_id (and `changes`)."""
    data = notice_sample(system, name) | changes
    data["notice_id"] = f"DB-TEST-{uuid.uuid4().hex[:16].upper()}"
    record = SupervisionNotice.model_validate(data)
    return Envelope.wrap(
        record, source=CENTRE_SOURCE, operation="insert", time=datetime.now().astimezone()
    )

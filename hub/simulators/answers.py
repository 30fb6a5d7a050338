"""How a simulated department answers the tasks it received: task feedback grown from its samples.

A department system that received a collaboration task reports back through its own inbound
channel (`task_feedback`), in its own format. The simulator does not write that format itself:
it takes the system's valid feedback sample, finds a record fed back there (status 5 or 6), and
puts the received task's id and dispatcher in place of the sample's, byte for byte in the
sample's encoding. The hub then reads it with the department's own mapping, as it would the real
system's answer.

    answers = TaskAnswers(mappings["market-penalty"], dispatcher={"name": ..., "credit_code": ...})
    payload = answers.feedback("XT-TS330106202603010001")   # a TrafficPayload to push
    answers.result                                           # the result text it reports
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace as with_fields

from hub.simulators.traffic import SystemTraffic, TrafficPayload
from mappings import PayloadRejected, SystemMappings
from standard.datasets.collaboration_task import FED_BACK_STATUSES

DERIVED_TASK_ID = re.compile(rb"(?:XT|SJ)-[0-9A-Za-z]+")
"""Ids of the tasks the collaboration centre dispatches (`centre.collaboration.task_id_of`)."""


def replaced(payload: TrafficPayload, values: Mapping[str, str]) -> TrafficPayload:
    """`payload` with literal values replaced, encoded as the payload is (UTF-8 or GB18030).

    Raises ValueError naming a value the payload does not contain.
    """
    body = payload.body
    try:
        body.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        encoding = "gb18030"
    for old, new in values.items():
        if old.encode(encoding) not in body:
            raise ValueError(f"{old!r} is not in {payload.system} {payload.label}")
        body = body.replace(old.encode(encoding), new.encode(encoding))
    return with_fields(payload, body=body, kind="generated", label=f"{payload.label} (answer)")


class TaskAnswers:
    """Task feedback of one department system (see the module docstring).

    Parameters:
      mappings: the system's mapping folder (its task_feedback samples and mapping).
      dispatcher: who dispatches the tasks it answers (a DepartmentRef as data): the feedback
        names it, so the hub routes the answer back to the dispatcher's system.

    Raises ValueError when the folder has no valid feedback sample with a fed-back record.
    """

    message_type = "task_feedback"

    def __init__(self, mappings: SystemMappings, *, dispatcher: Mapping[str, str]) -> None:
        self.system = mappings.id
        for sample in SystemTraffic(mappings, self.message_type).samples():
            try:
                translation = mappings.translate(
                    self.message_type, sample.body, charset=sample.charset
                )
            except PayloadRejected:
                continue
            fed_back = [
                e.data for e in translation.envelopes if e.data["status"] in FED_BACK_STATUSES
            ]
            if fed_back:
                record = fed_back[0]
                break
        else:
            raise ValueError(f"{self.system} has no valid task_feedback sample reporting a result")
        self._sample = sample
        self._task_id = str(record["task_id"])
        self.result: str = str(record["feedback_result"])
        """The result the feedback reports (the sample's)."""
        self._dispatcher: dict[str, str] = {}
        sample_dispatcher = record["dispatcher"]
        for key in ("name", "credit_code"):
            old, new = sample_dispatcher.get(key), dispatcher.get(key)
            if old and new:
                self._dispatcher[str(old)] = str(new)

    def feedback(self, task_id: str) -> TrafficPayload:
        """The system's feedback reporting the result of task `task_id`."""
        return replaced(self._sample, {self._task_id: task_id, **self._dispatcher})


def derived_task_ids(body: bytes) -> set[str]:
    """The collaboration centre's task ids mentioned in a delivered body."""
    return {match.decode() for match in DERIVED_TASK_ID.findall(body)}

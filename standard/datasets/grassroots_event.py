"""基层治理事件: an event reported on the grassroots-governance platform (基层治理平台)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Annotated

from standard.datasets.base import (
    Breach,
    StandardRecord,
    cross_field_rule,
    not_earlier,
    region_breaches,
)
from standard.datasets.common import DepartmentRef
from standard.dictionaries import DictionaryCode
from standard.fields import field
from standard.types import RegionCode, ShanghaiDateTime

EventSourceCode = Annotated[str, DictionaryCode("event_source")]
EventStatusCode = Annotated[str, DictionaryCode("event_status")]
ScenarioCode = Annotated[str, DictionaryCode("complaint_scenario")]

CLOSED_STATUSES = frozenset({"5", "6"})


class GrassrootsEvent(StandardRecord):
    """基层治理事件: something a grid worker or resident reported, and how it was handled."""

    event_id: str = field("事件编号", "Identifier of the event (record key).", max_length=64)
    title: str = field("事件标题", "Short title.", max_length=200)
    description: str = field("事件描述", "What was seen.", max_length=4000)
    scenario: ScenarioCode = field(
        "事件类别", "Scenario, shared with complaints (dictionary complaint_scenario)."
    )
    source: EventSourceCode = field("事件来源", "Who reported it (dictionary event_source).")
    reporter_name: str | None = field("上报人", "Who reported it.", default=None, max_length=50)
    region_code: RegionCode = field("行政区划代码", "County-level region (GB/T 2260).")
    township: str | None = field(
        "乡镇（街道）", "Township or street.", default=None, max_length=100
    )
    grid_code: str | None = field(
        "网格编码", "Grid the event lies in.", default=None, max_length=50
    )
    address: str | None = field("事发地址", "Address.", default=None, max_length=400)
    longitude: Decimal | None = field(
        "经度", "WGS-84 longitude in degrees (China: 73-136).", default=None, ge=73, le=136
    )
    latitude: Decimal | None = field(
        "纬度", "WGS-84 latitude in degrees (China: 3-54).", default=None, ge=3, le=54
    )
    reported_time: ShanghaiDateTime = field("上报时间", "When it was reported.")
    status: EventStatusCode = field("事件状态", "Handling status (dictionary event_status).")
    handling_department: DepartmentRef | None = field(
        "处置部门", "Department the event was dispatched to.", default=None
    )
    disposal_result: str | None = field(
        "处置结果", "How it was handled.", default=None, max_length=4000
    )
    closed_time: ShanghaiDateTime | None = field("办结时间", "When it was closed.", default=None)
    task_id: str | None = field(
        "协同任务编号",
        "Collaboration task it became (links collaboration_task).",
        default=None,
        max_length=64,
        links=("collaboration_task",),
    )

    @cross_field_rule("coordinates together", "A position needs both longitude and latitude.")
    def _coordinates_together(self) -> Iterator[Breach]:
        if (self.longitude is None) != (self.latitude is None):
            missing = "latitude" if self.latitude is None else "longitude"
            yield Breach(missing, None, "longitude and latitude come together")

    @cross_field_rule("closing not before report", "An event is closed after it was reported.")
    def _closed_after_reported(self) -> Iterator[Breach]:
        yield from not_earlier("closed_time", self.closed_time, "reported_time", self.reported_time)

    @cross_field_rule("result when closed", "A closed event (5, 6) has a result and closing time.")
    def _result_when_closed(self) -> Iterator[Breach]:
        if self.status in CLOSED_STATUSES:
            for name in ("disposal_result", "closed_time"):
                if getattr(self, name) is None:
                    yield Breach(name, None, f"status {self.status} is closed")

    @cross_field_rule("region in force", "The GB/T 2260 code is in force on the day reported.")
    def _region_in_force(self) -> Iterator[Breach]:
        yield from region_breaches("region_code", self.region_code, self.reported_time)

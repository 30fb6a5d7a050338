"""监管事项: one item of the supervision catalogue (监管事项目录, "一张清单")."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Annotated

from standard.datasets.base import Breach, StandardRecord, cross_field_rule, not_before
from standard.datasets.common import SupervisedObjectTypeCode
from standard.dictionaries import DictionaryCode
from standard.fields import field
from standard.types import CatalogueCode, CreditCode, RegionCode, ShanghaiDateTime

ItemTypeCode = Annotated[str, DictionaryCode("supervision_item_type")]
ItemStatusCode = Annotated[str, DictionaryCode("item_status")]


class SupervisionItem(StandardRecord):
    """监管事项: a catalogue item that inspection forms and penalty cases refer to."""

    catalogue_code: CatalogueCode = field(
        "监管事项目录编码",
        "The item's 14-digit catalogue code (the record key).",
        codes=("supervise_item_implement_code",),
    )
    name: str = field("监管事项名称", "Name of the supervision item.", max_length=500)
    parent_code: CatalogueCode | None = field(
        "主项编码", "Catalogue code of the main item this sub-item belongs to.", default=None
    )
    item_type: ItemTypeCode = field(
        "事项类型", "Type of administrative power (dictionary supervision_item_type)."
    )
    department: str = field("主管部门", "Department responsible for the item.", max_length=200)
    department_credit_code: CreditCode | None = field(
        "主管部门统一社会信用代码", "Credit code of the responsible department.", default=None
    )
    region_code: RegionCode = field(
        "行政区划代码", "Level that issued the item: 330000 for a provincial item."
    )
    legal_basis: str = field("设定依据", "Laws and regulations the item rests on.", max_length=4000)
    object_types: list[SupervisedObjectTypeCode] = field(
        "监管对象类型",
        "Types of object the item supervises (dictionary supervised_object_type).",
        min_length=1,
    )
    status: ItemStatusCode = field(
        "事项状态", "Whether the item is in force (dictionary item_status)."
    )
    valid_from: date = field("生效日期", "First day the item is in force.")
    valid_until: date | None = field("失效日期", "Last day the item is in force.", default=None)
    updated_time: ShanghaiDateTime = field("更新时间", "When the item was last changed.")

    @cross_field_rule("validity period ordered", "An item cannot lapse before it takes effect.")
    def _validity_ordered(self) -> Iterator[Breach]:
        yield from not_before("valid_until", self.valid_until, "valid_from", self.valid_from)

    @cross_field_rule("sub-item differs from main item", "An item is not its own main item.")
    def _not_own_parent(self) -> Iterator[Breach]:
        if self.parent_code is not None and self.parent_code == self.catalogue_code:
            yield Breach("parent_code", self.parent_code, "equals catalogue_code")

"""The reference lists as the checks read them: one entry per catalogue item, certificate and
supervised object, the latest the hub was sent.

`ReferenceLists` is what a check asks; `InMemoryLists` answers from dictionaries (tests, and a
hub without a store). A list that was never fed answers `loaded(...) is False`, so a check can
say "not checked" instead of refusing every record against an empty list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal, Protocol

ListName = Literal["catalogue", "officers", "objects"]
"""The three lists: supervision items, enforcement officers, supervised objects."""

LIST_DATASETS: dict[ListName, str] = {
    "catalogue": "supervision_item",
    "officers": "enforcement_officer",
    "objects": "supervised_object",
}
"""The standard's dataset that feeds each list."""


@dataclass(frozen=True)
class CatalogueEntry:
    """One supervision item (监管事项) as the catalogue last said it."""

    code: str
    name: str
    status: str  # dictionary item_status: 1 in force, 2 suspended, 3 repealed
    valid_from: date
    valid_until: date | None
    updated_time: datetime

    def in_force_on(self, day: date) -> bool:
        """Whether the item is in force (status 1) and within its validity period on `day`."""
        return (
            self.status == "1"
            and self.valid_from <= day
            and (self.valid_until is None or day <= self.valid_until)
        )


@dataclass(frozen=True)
class OfficerEntry:
    """One enforcement certificate (执法证) and its holder, as the officer list last said it."""

    certificate_number: str
    officer_id: str
    name: str
    agency: str
    status: str  # dictionary officer_status: 1 on duty, 2 suspended, 3 cancelled, 4 moved off
    certificate_issued: date
    certificate_valid_until: date
    updated_time: datetime

    def valid_on(self, day: date) -> bool:
        """Whether the certificate is held on duty (status 1) and within its dates on `day`."""
        return self.status == "1" and self.certificate_issued <= day <= self.certificate_valid_until


@dataclass(frozen=True)
class ObjectEntry:
    """One supervised object (监管对象), found by its certificate code (a credit code mostly)."""

    object_id: str
    certificate_code: str
    name: str
    region_code: str
    in_random_draw: bool
    updated_time: datetime


class ReferenceLists(Protocol):
    """What the checks ask of the reference lists."""

    def loaded(self, name: ListName) -> bool:
        """Whether the list was ever fed (an empty list cannot judge anything)."""
        ...

    def catalogue_item(self, code: str) -> CatalogueEntry | None:
        """The item with this 14-digit catalogue code, or None."""
        ...

    def officer(self, certificate_number: str) -> OfficerEntry | None:
        """The certificate with this number, or None."""
        ...

    def supervised_object(self, certificate_code: str) -> ObjectEntry | None:
        """The object with this certificate code, or None."""
        ...


@dataclass
class InMemoryLists:
    """`ReferenceLists` from dictionaries: a list is loaded when it holds an entry."""

    catalogue: dict[str, CatalogueEntry] = field(default_factory=dict)
    officers: dict[str, OfficerEntry] = field(default_factory=dict)
    objects: dict[str, ObjectEntry] = field(default_factory=dict)

    def loaded(self, name: ListName) -> bool:
        return bool({"catalogue": self.catalogue, "officers": self.officers,
                     "objects": self.objects}[name])  # fmt: skip

    def catalogue_item(self, code: str) -> CatalogueEntry | None:
        return self.catalogue.get(code)

    def officer(self, certificate_number: str) -> OfficerEntry | None:
        return self.officers.get(certificate_number)

    def supervised_object(self, certificate_code: str) -> ObjectEntry | None:
        return self.objects.get(certificate_code)

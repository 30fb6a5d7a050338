"""The standard's code dictionaries (检查形式, 处罚种类, ...): code → Chinese and English label.

Each dictionary is one YAML file in ``standard/dictionaries/``, validated when loaded::

    name: penalty_kind
    zh: 处罚种类
    en: Kind of administrative penalty
    source: Administrative Penalty Law (2021) art. 9 ...
    entries:
      - {code: "01", zh: 警告, en: Warning}

A field constrained by a dictionary is annotated ``Annotated[str, DictionaryCode("penalty_kind")]``:
it rejects a code not in the dictionary, naming the dictionary, and its JSON Schema carries the
codes (``enum``), their labels (``x-labels``) and the dictionary name (``x-dictionary``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic import ValidationError as _PydanticValidationError
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from standard.errors import StandardError, UnknownDictionary


def _folder() -> Any:
    # A folder beside this module (not a package of its own), as the code tables are.
    return resources.files("standard").joinpath("dictionaries")


class DictionaryFileInvalid(StandardError):
    """A dictionary YAML file is broken: which file, what is wrong."""

    def __init__(self, file: str, problem: str) -> None:
        self.file = file
        self.problem = problem
        super().__init__(f"code dictionary file {file}: {problem}")

    def __reduce__(self) -> tuple[type[DictionaryFileInvalid], tuple[str, str]]:
        return (type(self), (self.file, self.problem))


class DictionaryEntry(BaseModel):
    """One code of a dictionary with its labels."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(min_length=1, max_length=20, description="The code as sent on the wire.")
    zh: str = Field(min_length=1, description="Chinese label, as in the national standard.")
    en: str = Field(min_length=1, description="English label, for operators and docs.")
    note: str = Field(default="", description="Legal basis or remark for this code.")


class CodeDictionary(BaseModel):
    """A named list of codes; see the module docstring for the file format."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Name used in field declarations.")
    zh: str = Field(min_length=1, description="Chinese name of the dictionary.")
    en: str = Field(min_length=1, description="English name of the dictionary.")
    source: str = Field(min_length=1, description="Where the codes come from; how far official.")
    entries: tuple[DictionaryEntry, ...] = Field(min_length=1, description="The codes, in order.")

    @functools.cached_property
    def _by_code(self) -> dict[str, DictionaryEntry]:
        return {entry.code: entry for entry in self.entries}

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and code in self._by_code

    def __iter__(self) -> Iterator[DictionaryEntry]:  # type: ignore[override]
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def codes(self) -> tuple[str, ...]:
        """Every code, in file order."""
        return tuple(entry.code for entry in self.entries)

    def entry(self, code: str) -> DictionaryEntry:
        """The entry for ``code``; KeyError naming the dictionary when there is none."""
        try:
            return self._by_code[code]
        except KeyError:
            raise KeyError(f"code '{code}' is not in dictionary {self.zh} ({self.name})") from None

    def label(self, code: str) -> str:
        """The Chinese label of ``code``."""
        return self.entry(code).zh

    def code_for_label(self, zh: str) -> str:
        """The code whose Chinese label is ``zh`` (for mappings of systems that send labels)."""
        for entry in self.entries:
            if entry.zh == zh:
                return entry.code
        raise KeyError(f"label {zh!r} is not in dictionary {self.zh} ({self.name})")


@functools.cache
def dictionary_names() -> tuple[str, ...]:
    """Names of every dictionary shipped with the standard, sorted."""
    files = _folder().iterdir()
    return tuple(sorted(f.name.removesuffix(".yaml") for f in files if f.name.endswith(".yaml")))


@functools.cache
def dictionary(name: str) -> CodeDictionary:
    """The dictionary called ``name`` (loaded and validated once); UnknownDictionary if none."""
    if name not in dictionary_names():
        raise UnknownDictionary(name, dictionary_names())
    file = f"{name}.yaml"
    text = _folder().joinpath(file).read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
        loaded = CodeDictionary.model_validate(raw)
    except yaml.YAMLError as exc:
        raise DictionaryFileInvalid(file, f"not valid YAML: {exc}") from exc
    except _PydanticValidationError as exc:
        raise DictionaryFileInvalid(file, str(exc)) from exc
    if loaded.name != name:
        raise DictionaryFileInvalid(file, f"declares name {loaded.name!r}, expected {name!r}")
    codes = loaded.codes()
    duplicates = sorted({c for c in codes if codes.count(c) > 1})
    if duplicates:
        raise DictionaryFileInvalid(file, f"duplicate codes {duplicates}")
    return loaded


@dataclass(frozen=True)
class DictionaryCode:
    """Annotation marking a ``str`` field as constrained to the codes of one dictionary."""

    name: str

    def __post_init__(self) -> None:
        dictionary(self.name)  # a typo in a model declaration fails at import, not at runtime

    def check(self, value: str) -> str:
        """``value`` if it is a code of the dictionary, else a pydantic error naming it."""
        found = dictionary(self.name)
        if value in found:
            return value
        listing = ", ".join(f"{e.code} {e.zh}" for e in found.entries[:20])
        more = "" if len(found) <= 20 else f", ... ({len(found)} codes)"
        raise PydanticCustomError(
            "dictionary",
            "code '{code}' is not in dictionary {dictionary_zh} ({dictionary}); known: {known}",
            {
                "code": value,
                "dictionary": self.name,
                "dictionary_zh": found.zh,
                "known": listing + more,
            },
        )

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        # Every coded field of every record passes here: known codes are told by one set look-up.
        codes = frozenset(dictionary(self.name).codes())
        check = self.check

        def checked(value: str) -> str:
            return value if value in codes else check(value)

        return core_schema.no_info_after_validator_function(checked, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        found = dictionary(self.name)
        json_schema["enum"] = list(found.codes())
        json_schema["x-dictionary"] = self.name
        json_schema["x-labels"] = {e.code: f"{e.zh} / {e.en}" for e in found.entries}
        return json_schema

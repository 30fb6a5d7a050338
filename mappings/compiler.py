"""Compile field rules once into plain callables: paths compiled, pipes built, options checked.

Every mistake a mapping can hold is found here, at load time, and reported as a MappingError
naming the file, the line and column, and the field: an unknown function, options a function
refuses, a path that does not compile, a code table that does not exist, a dataset the standard
does not have.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Literal

from pydantic import ValidationError

from mappings.errors import ValueProblem
from mappings.functions import (
    FUNCTIONS,
    BuildContext,
    OptionProblem,
    RecordStep,
    Step,
    TrimOptions,
)
from mappings.language import Condition, FieldRule
from mappings.paths import (
    JsonPath,
    PathInvalid,
    RecordElement,
    XmlPath,
    compile_jmespath,
    compile_xpath,
    jmespath_truth,
    string_value,
    xpath_truth,
)
from mappings.yamlsource import Location, YamlFile
from standard.datasets import DATASETS, DatasetSpec

# A compiled rule: context (a RecordElement for XML, a JSON value) → value or None.
Evaluate = Callable[[Any], Any]
Format = Literal["xml", "json"]


@dataclass(frozen=True)
class CompiledPipe:
    """The steps of a pipe, each with whether it takes a whole list. A step that reads the
    record too (a RecordStep, such as `amount` with `unit_path`) is bound to the record's
    context when the rule is evaluated. `trims_first` says the first step is a plain `trim`
    (whitespace), which an XML path's trimmed reader can do as it reads."""

    steps: tuple[tuple[Step | RecordStep, bool], ...]
    trims_first: bool = False

    def __call__(self, value: Any, context: Any = None) -> Any:
        for step, whole_list in self.bound(context):
            if value is None:
                return None
            if type(value) is list and not whole_list:
                value = [result for item in value if (result := step(item)) is not None]
            else:
                value = step(value)
        return value

    def bound(self, context: Any) -> tuple[tuple[Step, bool], ...]:
        """The steps, those that read the record bound to `context`."""
        return tuple(
            (step.bind(context) if isinstance(step, RecordStep) else step, whole)
            for step, whole in self.steps
        )

    @property
    def reads_record(self) -> bool:
        """True when a step reads the record beside the value."""
        return any(isinstance(step, RecordStep) for step, _ in self.steps)


def mapped_dataset(name: str, document: YamlFile) -> DatasetSpec:
    """The dataset a mapping file names under `dataset`; a MappingError if the standard lacks it."""
    spec = DATASETS.get(name)
    if spec is None:
        raise document.error(
            f"the standard has no dataset '{name}' (it has: {', '.join(sorted(DATASETS))})",
            ("dataset",),
        )
    return spec


class Sealed:
    """A compiled object whose attributes cannot change once `seal()` was called."""

    _sealed = False

    def seal(self) -> None:
        """Forbid any further change of this object's attributes."""
        object.__setattr__(self, "_sealed", True)

    def __setattr__(self, name: str, value: Any) -> None:
        if self._sealed:
            raise AttributeError(f"{type(self).__name__} is compiled and cannot be changed")
        object.__setattr__(self, name, value)


class RuleCompiler:
    """Compiles the rules of one mapping file (one format, one set of namespaces)."""

    def __init__(
        self,
        document: YamlFile,
        syntax: Format,
        namespaces: dict[str, str],
        context: BuildContext,
    ) -> None:
        self.document = document
        self.syntax = syntax
        self.namespaces = namespaces
        self.context = context
        self.paths_read: list[XmlPath | JsonPath] = []
        self._check_namespaces()

    def _check_namespaces(self) -> None:
        for prefix, uri in self.namespaces.items():
            if not re.fullmatch(r"[^\W\d][\w.\-]*", prefix):
                raise self.document.error(
                    f"namespace prefix '{prefix}' is not an XML name", ("namespaces", prefix)
                )
            if not uri:
                raise self.document.error(
                    f"namespace prefix '{prefix}' has an empty URI", ("namespaces", prefix)
                )

    # ------------------------------------------------------------------ paths

    def path(self, text: str, location: Location, field: str | None) -> XmlPath | JsonPath:
        """Compile a path of this file's format, or raise a MappingError at `location`."""
        try:
            compiled: XmlPath | JsonPath = (
                compile_xpath(text, self.namespaces)
                if self.syntax == "xml"
                else compile_jmespath(text)
            )
        except PathInvalid as error:
            raise self.document.error(str(error), location, field=field) from None
        self.paths_read.append(compiled)
        return compiled

    def check_path(self, text: str, location: Location) -> None:
        """Raise a MappingError at `location` when `text` is not a path of this file's format;
        unlike `path`, it does not count as read (`ignore:` names fields nobody reads)."""
        try:
            if self.syntax == "xml":
                compile_xpath(text, self.namespaces)
            else:
                compile_jmespath(text)
        except PathInvalid as error:
            raise self.document.error(str(error), location) from None

    def _option_path(
        self, text: str, option: str, *, location: Location, field: str | None
    ) -> Evaluate:
        """A reader of a path a function's option names (`amount`'s `unit_path`)."""
        try:
            compiled: XmlPath | JsonPath = (
                compile_xpath(text, self.namespaces)
                if self.syntax == "xml"
                else compile_jmespath(text)
            )
        except PathInvalid as error:
            raise OptionProblem(str(error), option) from None
        self.paths_read.append(compiled)
        return compiled.reader

    # ------------------------------------------------------------------ pipes

    def pipe(self, items: Sequence[Any], location: Location, field: str | None) -> CompiledPipe:
        """Build each function of a pipe with its options."""
        steps: list[tuple[Step | RecordStep, bool]] = []
        trims_first = False
        context = replace(
            self.context, read_path=partial(self._option_path, location=location, field=field)
        )
        for index, item in enumerate(items):
            here = (*location, index)
            if isinstance(item, str):
                name, raw = item, None
            elif isinstance(item, dict) and len(item) == 1:
                name, raw = next(iter(item.items()))
            else:
                raise self.document.error(
                    "a pipe item is a function name or a mapping of one function name to its "
                    "options",
                    here,
                    field=field,
                )
            function = FUNCTIONS.get(name)
            if function is None:
                raise self.document.error(
                    f"unknown function '{name}'{_did_you_mean(name, FUNCTIONS)}; "
                    "`jghub mappings functions` lists them",
                    here,
                    field=field,
                )
            option_location = here if raw is None or not isinstance(item, dict) else (*here, name)
            try:
                options = function.parse_options(raw)
                step = function.build(options, context)
            except ValidationError as error:
                problem = error.errors(include_url=False)[0]
                where = tuple(part for part in problem["loc"] if isinstance(raw, dict))
                option = ".".join(str(part) for part in problem["loc"])
                raise self.document.error(
                    f"function '{name}': option '{option}': {problem['msg']}",
                    (*option_location, *where),
                    field=field,
                ) from None
            except OptionProblem as error:
                where = (error.option,) if error.option and isinstance(raw, dict) else ()
                raise self.document.error(
                    f"function '{name}': {error}", (*option_location, *where), field=field
                ) from None
            except ValueError as error:  # a builder's own check (e.g. a time zone)
                raise self.document.error(
                    f"function '{name}': {error}", option_location, field=field
                ) from None
            steps.append((step, function.whole_list))
            if index == 0:
                trims_first = isinstance(options, TrimOptions) and options.characters is None
        return CompiledPipe(tuple(steps), trims_first)

    # ------------------------------------------------------------------ rules

    def rule(self, rule: FieldRule, location: Location, field: str | None) -> Evaluate:
        """Compile a field rule into an evaluator of a record context."""
        source, source_text = self._source(rule, location, field)
        pipe = self.pipe(rule.pipe, (*location, "pipe"), field) if rule.pipe else None
        default = rule.default
        if isinstance(source, XmlPath):
            return _read_xml(source, pipe, default, source_text)
        return _combine(source, pipe, default, source_text)

    def _source(
        self, rule: FieldRule, location: Location, field: str | None
    ) -> tuple[Evaluate | XmlPath, str | None]:
        kind = rule.source
        if kind == "path":
            assert rule.path is not None
            path = self.path(rule.path, (*location, "path"), field)
            return (path if isinstance(path, XmlPath) else path.reader), rule.path
        if kind == "const":
            constant = rule.const
            return (lambda context: constant), None
        if kind == "concat":
            assert rule.concat is not None
            parts = [
                self.rule(part, (*location, "concat", index), field)
                for index, part in enumerate(rule.concat)
            ]
            return _concat(parts, rule.separator), None
        if kind == "when":
            assert rule.when is not None and rule.then is not None
            test = self.condition(rule.when, (*location, "when"), field)
            then = self.rule(rule.then, (*location, "then"), field)
            otherwise = self.rule(rule.else_, (*location, "else"), field) if rule.else_ else None
            return _choose(test, then, otherwise), None
        if kind == "each":
            assert rule.each is not None
            path = self.path(rule.each, (*location, "each"), field)
            item_fields = (
                self.fields(rule.fields, (*location, "fields")) if rule.fields is not None else None
            )
            return self._each(path, item_fields), rule.each
        assert rule.fields is not None
        nested = self.fields(rule.fields, (*location, "fields"))
        return _object(nested), None

    def fields(
        self, rules: dict[str, FieldRule], location: Location
    ) -> tuple[tuple[str, Evaluate], ...]:
        """Compile the rules of an object's fields."""
        return tuple(
            (name, self.rule(rule, (*location, name), name)) for name, rule in rules.items()
        )

    def _each(
        self, path: XmlPath | JsonPath, item_fields: tuple[tuple[str, Evaluate], ...] | None
    ) -> Evaluate:
        build = _object(item_fields) if item_fields is not None else None
        if isinstance(path, XmlPath):
            xpath = path.xpath

            def each_xml(context: RecordElement) -> Any:
                result = xpath(context.element)
                if not isinstance(result, list):
                    result = [result]
                if build is None:
                    return [text for node in result if (text := _node_text(node))] or None
                items = []
                for index, node in enumerate(result):
                    if not hasattr(node, "tag"):
                        continue
                    try:
                        items.append(build(RecordElement(node)))
                    except ValueProblem as problem:
                        raise _inside(problem, index) from None
                return items or None

            return each_xml

        def each_json(context: Any) -> Any:
            found = path.evaluate(context)
            if found is None:
                return None
            listed = found if isinstance(found, list) else [found]
            if build is None:
                return [item for item in listed if item is not None and item != ""] or None
            items = []
            for index, item in enumerate(listed):
                try:
                    items.append(build(item))
                except ValueProblem as problem:
                    raise _inside(problem, index) from None
            return items or None

        return each_json

    def condition(
        self, condition: Condition, location: Location, field: str | None
    ) -> Callable[[Any], bool]:
        """Compile a `when` condition into a test of a record context."""
        path = self.path(condition.path, (*location, "path"), field)
        pipe = self.pipe(condition.pipe, (*location, "pipe"), field) if condition.pipe else None
        test = condition.test
        if test == "truthy" and pipe is None:
            if isinstance(path, XmlPath):
                xpath = path.xpath
                return lambda context: xpath_truth(xpath(context.element))
            expression = path
            return lambda context: jmespath_truth(expression.evaluate(context))
        value_of = (
            _read_xml(path, pipe, None, condition.path)
            if isinstance(path, XmlPath)
            else _combine(path.value, pipe, None, condition.path)
        )
        if test == "equals":
            expected = condition.equals
            return lambda context: _same(value_of(context), expected)
        if test == "in":
            allowed = list(condition.in_ or [])
            return lambda context: any(_same(value_of(context), item) for item in allowed)
        if test == "matches":
            assert condition.matches is not None
            try:
                regex = re.compile(condition.matches)
            except re.error as error:
                raise self.document.error(
                    f"not a valid regular expression: {error}", (*location, "matches"), field=field
                ) from None

            def matches(context: Any) -> bool:
                value = value_of(context)
                return value is not None and regex.fullmatch(str(value)) is not None

            return matches
        return lambda context: jmespath_truth(value_of(context))


def _combine(
    source: Evaluate, pipe: CompiledPipe | None, default: Any, source_text: str | None
) -> Evaluate:
    # Specialised closures: this runs once per field per record.
    if pipe is None and default is None:
        return source
    if pipe is None:

        def with_default(context: Any) -> Any:
            value = source(context)
            return default if value is None else value

        return with_default

    reads_record = pipe.reads_record
    plain_steps = pipe.bound(None)

    def piped(context: Any) -> Any:
        value = source(context)
        if value is None:
            return default
        steps = pipe.bound(context) if reads_record else plain_steps
        try:
            for step, whole_list in steps:
                if whole_list or type(value) is not list:
                    value = step(value)
                else:
                    value = [result for item in value if (result := step(item)) is not None]
                if value is None:
                    return default
        except ValueProblem as problem:
            raise _read_from(problem, source_text) from None
        return value

    return piped


def _read_xml(
    path: XmlPath, pipe: CompiledPipe | None, default: Any, source_text: str | None
) -> Evaluate:
    """What `_combine` makes of an XML path's reader, with less work per record.

    An XML path's value is never a list (text, a number or a boolean), and a step that does not
    take whole lists gives one value for one value, so a pipe of such steps needs no list
    handling; a leading `trim` is done by the path's trimmed reader as it reads. A pipe with a
    whole-list step or one reading the record goes through `_combine` as it is.
    """
    if pipe is None or pipe.reads_record or any(whole for _, whole in pipe.steps):
        return _combine(path.reader, pipe, default, source_text)
    read = path.reader
    steps = tuple(step for step, _ in pipe.bound(None))
    if pipe.trims_first:
        read, steps = path.trimmed_reader, steps[1:]
    if not steps:
        return _combine(read, None, default, source_text)

    def read_piped(context: Any) -> Any:
        value = read(context)
        try:
            for step in steps:  # none sees an absent value
                if value is None:
                    return default
                value = step(value)
        except ValueProblem as problem:
            raise _read_from(problem, source_text) from None
        return default if value is None else value

    return read_piped


def _concat(parts: list[Evaluate], separator: str) -> Evaluate:
    def concat(context: Any) -> Any:
        texts = []
        for part in parts:
            value = part(context)
            if value is not None:
                texts.append(value if isinstance(value, str) else _as_text(value))
        return separator.join(texts) or None

    return concat


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return format(value, "f") if hasattr(value, "as_tuple") else str(value)


def _choose(test: Callable[[Any], bool], then: Evaluate, otherwise: Evaluate | None) -> Evaluate:
    def choose(context: Any) -> Any:
        if test(context):
            return then(context)
        return otherwise(context) if otherwise is not None else None

    return choose


def _object(fields: tuple[tuple[str, Evaluate], ...]) -> Evaluate:
    def build(context: Any) -> Any:
        result: dict[str, Any] = {}
        for name, evaluate in fields:
            try:
                value = evaluate(context)
            except ValueProblem as problem:
                raise _inside(problem, name) from None
            if value is not None:
                result[name] = value
        return result or None

    return build


def _read_from(problem: ValueProblem, source_text: str | None) -> ValueProblem:
    if problem.source_path is None:
        problem.source_path = source_text
    return problem


def _inside(problem: ValueProblem, part: str | int) -> ValueProblem:
    problem.field_path = (part, *problem.field_path)
    return problem


def _node_text(node: Any) -> str | None:
    return string_value(node) or None


def _same(value: Any, expected: Any) -> bool:
    if value == expected:
        return True
    # Paths give text; YAML gives numbers and booleans: compare them as the text they would be.
    return value is not None and expected is not None and str(value) == str(expected)


def _did_you_mean(name: str, known: dict[str, Any]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""

"""Every `jghub ... --help` reads well at any width: its paragraphs break only at the width.

A help text hard-wrapped in the source comes out ragged once the terminal wraps it again: a short
line, then a continuation that would have fit on it ("over the embedded" / "bus in a new data
folder"). These tests render every command's help at a narrow and a wide terminal and look for
such breaks in the description paragraphs and in the commands panel of each group.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import pytest
import typer
from rich.cells import cell_len
from typer.testing import CliRunner

from hub.cli import app, one_line_paragraphs

WIDTHS = (60, 160)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
PANEL_EDGES = ("╭", "│", "╰")


def _commands(
    command: typer.core.TyperCommand | typer.core.TyperGroup, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], typer.core.TyperCommand | typer.core.TyperGroup]]:
    yield path, command
    if isinstance(command, typer.core.TyperGroup):
        for name, sub in sorted(command.commands.items()):
            yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(typer.main.get_command(app)))
GROUPS = [path for path, command in COMMANDS.items() if isinstance(command, typer.core.TyperGroup)]


def _help(path: tuple[str, ...], width: int) -> list[str]:
    result = CliRunner().invoke(
        app, [*path, "--help"], env={"COLUMNS": str(width)}, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    lines = [ANSI.sub("", line).rstrip() for line in result.output.splitlines()]
    # The check below is only as good as its width: the help must really be laid out at it.
    assert max(cell_len(line) for line in lines) <= width
    assert any(line.startswith("╭") and cell_len(line) == width for line in lines)
    return lines


def _ragged(lines: list[str], width: int) -> list[str]:
    """Breaks in consecutive lines of one block of text, each `width` cells wide, that are not at
    the width: the next line's first word would have fit after the line's last one."""
    found = []
    for line, following in itertools.pairwise(lines):
        if not line.strip() or not following.strip():
            continue
        next_word = following.split()[0]
        if cell_len(line.rstrip()) + 1 + cell_len(next_word) <= width:
            found.append(f"{line.strip()!r} / {following.strip()!r}")
    return found


def _description(lines: list[str]) -> list[str]:
    """The prose above the panels, without the usage line: the command's description."""
    prose = []
    for line in lines:
        if line.startswith(PANEL_EDGES):
            break
        prose.append(line)
    blocks = "\n".join(prose).strip("\n").split("\n\n")
    return "\n\n".join(b for b in blocks if not b.strip().startswith("Usage:")).splitlines()


def _commands_panel_cells(lines: list[str]) -> tuple[list[list[str]], int]:
    """The description cell of each row of the Commands panel, line by line, and its width."""
    inside = False
    rows: list[list[str]] = []
    column = width = 0
    for line in lines:
        if line.startswith("╭─ Commands"):
            inside = True
            continue
        if not inside:
            continue
        if line.startswith("╰"):
            break
        content = line[2:-2]  # "│ " and " │"
        if not rows:  # the first row places the column: after the command's name
            name, first_word = content.split()[:2]
            column = content.index(first_word, len(name))
            width = cell_len(content) - column
        if content[:column].strip():  # a command's name: its row starts
            rows.append([])
        rows[-1].append(content[column:])
    return rows, width


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "jghub")
def test_description_paragraphs_break_only_at_the_width(path: tuple[str, ...], width: int) -> None:
    lines = _help(path, width)
    description = [line[1:] for line in _description(lines)]
    assert description, "every command says what it does"
    assert _ragged(description, width - 2) == []


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("path", GROUPS, ids=lambda path: " ".join(path) or "jghub")
def test_commands_panel_cells_break_only_at_the_width(path: tuple[str, ...], width: int) -> None:
    cells, cell_width = _commands_panel_cells(_help(path, width))
    assert cells, "a group lists its commands"
    problems = [problem for cell in cells for problem in _ragged(cell, cell_width)]
    assert problems == []


def test_every_help_paragraph_reaches_typer_as_one_line() -> None:
    """The root of the rule above: typer keeps a help text's single newlines as line breaks in
    some places and versions and joins them in others; a paragraph without any reads the same
    everywhere. The `jghub` group joins them for every command, option and argument below it."""
    hard_wrapped = []
    for path, command in COMMANDS.items():
        texts = [("", command.help or "")]
        texts += [(p.name or "", getattr(p, "help", None) or "") for p in command.params]
        for where, text in texts:
            for paragraph in text.strip().split("\n\n"):
                if "\n" in paragraph.strip():
                    hard_wrapped.append(f"jghub {' '.join(path)} {where}: {paragraph[:40]!r}")
    assert hard_wrapped == []


def test_paragraphs_are_joined_and_preformatted_ones_kept() -> None:
    text = """First line
        goes on.

        Second  paragraph
        ends here.

        \b
        kept
        as written"""
    assert one_line_paragraphs(text) == (
        "First line goes on.\n\nSecond  paragraph ends here.\n\n\b\nkept\nas written"
    )

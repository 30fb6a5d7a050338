"""How a value a sender chose reaches an operator's terminal and logs: literally, never as markup
or as terminal control.

A complaint id may hold `[/x]` (rich markup, which crashed `jghub dead list` with a MarkupError),
`\x1b[31m` (an escape sequence the terminal would obey), a newline (a forged log line) or a
right-to-left override (text that reads backwards). `visible` writes every such character as its
escape, so `a\nb` is shown as the four characters `a\nb`; `literal` gives rich a Text of that,
which rich prints as it is, whatever brackets it holds. Every table and message of the operators'
tools passes sender values through `literal`, and the hub's log lines through `visible`.
"""

from __future__ import annotations

from rich.text import Text

# C0 controls (with TAB, CR, LF), DEL, C1 controls, and the Unicode characters that reorder or
# break a line on a terminal: bidi embeddings, overrides and isolates, marks, line separators.
_CONTROLS = [*range(0x00, 0x20), *range(0x7F, 0xA0)]
_FORMATTING = [
    0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A),
]  # fmt: skip
_VISIBLE = {
    code: (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    for code in (*_CONTROLS, *_FORMATTING)
}
_VISIBLE.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def visible(text: object) -> str:
    """`text` (str() of anything else; None as "") with every control, line-breaking and bidi
    character written as its escape, as Python writes them: `\\x1b`, `\\n`, `\\u202e`."""
    if text is None:
        return ""
    return str(text).translate(_VISIBLE)


def literal(text: object, style: str = "") -> Text:
    """`visible(text)` as rich Text: printed as it is, brackets and all, never read as markup."""
    return Text(visible(text), style=style)

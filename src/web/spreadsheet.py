"""Text a client sent, echoed in a CSV answer, made safe for whatever reads the file.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula. Readers do not agree on
where a cell starts: Python's csv and LibreOffice end a line at a lone carriage return, a European spreadsheet
splits on ``;`` what was written with ``,`` (and quotes only count at a cell's start), a naive reader splits on
tabs or commas inside quotes. So the defence does not trust quoting: wherever a cell could start for some
reader (the text's start, after CR, LF, ``;``, ``,``, tab or a quote), a formula character gets a ``'`` in front,
which spreadsheets read as "this is text" (OWASP's advice for CSV injection). Plain numbers such as ``-5`` or
``-72,5`` stay as they are: a spreadsheet reads them as numbers, not formulas. Then ``csv_cell`` quotes the cell
for the file's own separator, CR included (Python's csv writer leaves a lone CR unquoted).
"""

from __future__ import annotations

import re

FORMULA_STARTS = "=+-@"
# Where some reader may start a new cell: line breaks, the separators of every dialect, a quote.
CELL_BREAKS = '\r\n;,\t"'
_NUMBER = r"[ ]*[+-]?\d+(?:[.,]\d+)?(?:[eE][+-]?\d+)?"
_UNSAFE = re.compile(
    rf"(^|[{re.escape(CELL_BREAKS)}])(?=[ ]*[{re.escape(FORMULA_STARTS)}])(?!{_NUMBER}(?:$|[{re.escape(CELL_BREAKS)}]))"
)


def defuse(text: str) -> str:
    """``text`` with a ``'`` before every formula character that some reader would see at a cell's start."""
    return _UNSAFE.sub(r"\1'", text)


def needs_quotes(separator: str) -> tuple[str, ...]:
    """What makes a cell quoted in a file with this separator: the separator, a quote, LF and CR."""
    return (separator, '"', "\n", "\r")


def csv_cell(text: str, separator: str = ",") -> str:
    """An echoed cell as the CSV answer writes it: defused, then quoted if it holds the separator, a quote or a
    line break (quotes doubled). Any separator: ``,``, ``;`` or tab."""
    cell = defuse(text)
    if any(mark in cell for mark in needs_quotes(separator)):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def defuse_column(column: list[str]) -> list[str]:
    """``defuse`` over a column of text; a column with nothing to defuse (nearly every one) in one search."""
    if not _UNSAFE.search("\n".join(column)):  # the joins are line breaks: each cell's start is tested
        return column
    return [defuse(cell) for cell in column]

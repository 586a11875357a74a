"""What a JSON text holds, seen before it is parsed: one compiled pass over its bytes.

The body guard (``src.web.body_guard``) refuses a body that nests too deep or holds too many values before any
parser builds it; ``src.validation.parse_json`` reads a plain body with orjson only when it can tell, from the
bytes, that orjson gives what the standard parser would. Both ask this one pass: a byte is looked up in a table
of what it can be (ordinary, digit, quote, backslash, separator, opening or closing bracket) and only the few
that matter change the state (inside a string or not, the depth, the counts). About 1 ms a megabyte.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np

from src.compiled import compiled

_ORDINARY, _DIGIT, _QUOTE, _BACKSLASH, _COMMA, _COLON, _OPENING, _CLOSING = range(8)
_KINDS = np.zeros(256, dtype=np.uint8)
_KINDS[list(b"0123456789")] = _DIGIT
_KINDS[ord('"')] = _QUOTE
_KINDS[ord("\\")] = _BACKSLASH
_KINDS[ord(",")] = _COMMA
_KINDS[ord(":")] = _COLON
_KINDS[list(b"[{")] = _OPENING
_KINDS[list(b"]}")] = _CLOSING
_NO_STOP = np.iinfo(np.int64).max


class JsonText(NamedTuple):
    """What one pass over a JSON text's bytes found.

    ``depth``: how deep arrays and objects nest; ``values``: at most how many values it holds (its separators and
    openings outside strings, plus one; 0 for a blank text); ``colons``: every colon, in strings too;
    ``longest_digits``: the longest run of ASCII digits anywhere; ``backslash``: whether any byte is a backslash.
    When the pass stopped at a limit (``stopped``), the figures are lower bounds, already past that limit. A
    named tuple: made on every JSON request, it costs a fraction of a frozen dataclass's construction.
    """

    depth: int
    values: int
    colons: int
    longest_digits: int
    backslash: bool
    stopped: bool


@compiled
def _scan(data: np.ndarray, kinds: np.ndarray, stop_depth: int, stop_values: int) -> tuple:
    """The pass: (depth, separators, colons, longest digit run, backslash seen, stopped)."""
    depth = deepest = separators = colons = run = longest = 0
    inside = backslash = False
    i = 0
    while i < len(data):
        kind = kinds[data[i]]
        i += 1
        if kind == 0:  # most bytes: letters, spaces
            run = 0
            continue
        if kind == 1:
            run += 1
            longest = max(longest, run)
            continue
        run = 0
        if inside:
            if kind == 3:  # an escape: the next byte is text, whatever it is
                backslash = True
                i += 1
            elif kind == 2:
                inside = False
            elif kind == 5:
                colons += 1
            continue
        if kind == 2:
            inside = True
        elif kind == 4:
            separators += 1
        elif kind == 5:
            separators += 1
            colons += 1
        elif kind == 6:
            depth += 1
            separators += 1
            if depth > deepest:
                deepest = depth
                if deepest > stop_depth:
                    return deepest, separators, colons, longest, backslash, True
        elif kind == 7:
            depth -= 1
        elif kind == 3:
            backslash = True
        if separators >= stop_values:
            return deepest, separators, colons, longest, backslash, True
    return deepest, separators, colons, longest, backslash, False


def scan(body: bytes, stop_depth: int | None = None, stop_values: int | None = None) -> JsonText:
    """One pass over ``body``, stopped as soon as the depth passes ``stop_depth`` or the values pass
    ``stop_values`` (a hostile body then costs no more than the bytes up to that point). The text is read in the
    encoding ``json`` reads it in (UTF-8, or UTF-16/-32 by its first bytes)."""
    encoding = json.detect_encoding(body)
    if encoding != "utf-8":  # UTF-16 or -32, which json reads too, read as UTF-8 text: a byte of one of their
        try:  # characters could otherwise pass for a quote and the brackets after it for text
            body = body.decode(encoding, "surrogatepass").encode("utf-8", "surrogatepass")
        except UnicodeError:  # not text in any encoding json reads: the parser refuses it, whatever the scan says
            pass
    data = np.frombuffer(body, dtype=np.uint8)
    deepest, separators, colons, longest, backslash, stopped = _scan(
        data,
        _KINDS,
        _NO_STOP if stop_depth is None else int(stop_depth),
        _NO_STOP if stop_values is None else max(int(stop_values), 0),
    )
    return JsonText(deepest, separators + 1 if body.strip() else 0, colons, longest, backslash, stopped)


def warm_up() -> None:
    """Compile (or load from the cache) the pass for the argument types ``scan`` gives."""
    scan(b'{"a": [1]}', 8, 8)

"""How a refusal shows what it refuses: escaped, on one line, cut to a readable length.

A 100 kB key, a 400-digit number, a value nested 100,000 deep or a string of newlines and lone
surrogates is shown as a short escaped prefix with ``...``, and is never rendered whole just to
be cut: never a 100 kB line, a second line, or a traceback raised while building the message.
"""

from __future__ import annotations

import re
from typing import Any

SHOWN_CHARS = 80  # what a refusal shows of a value
LABEL_CHARS = 120  # what it shows of a file name or another source
_MAX_DEPTH = 6
# repr() of an int over 4300 digits raises ValueError (CPython's int/str limit); well below it:
_HUGE_INT_BITS = 13_000
# A key shown as ``.key`` in a field path; anything else is shown ``['quoted']``.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")


def shorten(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters (ending ``...``), for any value."""
    try:
        text = _repr(value, limit + 1, 0)
    except Exception:  # a value of some odd type whose repr fails: say what it is
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def label(text: Any, limit: int = LABEL_CHARS) -> str:
    """A name (a file, ``stdin``) as is when short and printable, else :func:`shorten`-ed."""
    if isinstance(text, str) and text.isprintable() and len(text) <= limit:
        return text
    return shorten(text, limit)


def field_path(loc: tuple[Any, ...]) -> str:
    """``("jobs", 0, "env", "MODE")`` → ``jobs[0].env.MODE``; ``()`` → ``(top level)``."""
    path = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            path += f"[{part}]"
        elif isinstance(part, str) and _PLAIN_KEY.fullmatch(part):  # "argv", "MODE", "--date"
            path += f".{part}" if path else part
        else:
            path += f"[{shorten(part, 40)}]"
    return path or "(top level)"


def one_line(text: str, limit: int = 400) -> str:
    """A message from elsewhere (argparse) made one line: controls escaped, then cut."""
    escaped = "".join(char if char.isprintable() else repr(char)[1:-1] for char in text[: limit + 1])
    return escaped if len(escaped) <= limit else escaped[: limit - 3] + "..."


def _repr(value: Any, budget: int, depth: int) -> str:
    if isinstance(value, str):
        return repr(value[:budget])  # repr escapes newlines, controls and lone surrogates
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() > _HUGE_INT_BITS:
            return f"<an integer of {value.bit_length()} bits>"
        text = repr(value)
        digits = len(text.lstrip("-"))
        return text if len(text) <= budget else f"{text[:12]}...<{digits} digits>"
    if isinstance(value, (list, tuple, dict)):
        return _repr_container(value, budget, depth)
    return repr(value)[:budget]


def _repr_container(value: Any, budget: int, depth: int) -> str:
    opening, closing = {list: "[]", tuple: "()", dict: "{}"}.get(type(value), "[]")
    if not value:
        return opening + closing
    if depth >= _MAX_DEPTH:
        return f"{opening}...{closing}"
    parts: list[str] = []
    used = 2
    items = value.items() if isinstance(value, dict) else value
    for item in items:
        if used >= budget:  # stop rendering once the shown part is full
            parts.append("...")
            break
        room = max(budget - used, 1)
        if isinstance(value, dict):
            key, inner = item
            part = f"{_repr(key, room, depth + 1)}: {_repr(inner, room, depth + 1)}"
        else:
            part = _repr(item, room, depth + 1)
        parts.append(part)
        used += len(part) + 2
    return opening + ", ".join(parts) + closing

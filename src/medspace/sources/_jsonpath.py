"""JSON paths into NDJSON documents: FHIR resources (``content[0].attachment.text``) and the DICOM JSON model
(``"00100020".Value[0]``, tags quoted because they start with digits).

The grammar is deliberately small, a subset of JSONPath without the leading ``$``: names (letters, digits,
``_``, ``-``; quoted with double quotes when they start with a digit or hold other characters) separated by
dots, each optionally followed by list indexes ``[n]``. Anything richer (filters, wildcards) would make a
spec a program; a vendor needing it gets a derived column instead.
"""

from __future__ import annotations

import json
import re
from typing import Any

JsonPath = tuple[str | int, ...]

_TOKEN = re.compile(r'"(?P<quoted>[^"]+)"|(?P<name>[A-Za-z_][A-Za-z0-9_\-]*)|\[(?P<index>\d+)\]|(?P<dot>\.)')


def parse_json_path(path: str) -> JsonPath:
    """Parse ``path`` into keys (str) and list indexes (int).

    Raises:
        ValueError: the path is not in the grammar; the message gives the position.

    Example:
        >>> parse_json_path('"00100020".Value[0]')
        ('00100020', 'Value', 0)
    """
    steps: list[str | int] = []
    position = 0
    expect_name = True
    while position < len(path):
        match = _TOKEN.match(path, position)
        if match is None:
            raise ValueError(f"JSON path {path!r}: unexpected character at position {position}")
        if match["dot"] is not None:
            if expect_name:
                raise ValueError(f"JSON path {path!r}: a name is missing at position {position}")
            expect_name = True
        elif match["index"] is not None:
            if expect_name:
                raise ValueError(f"JSON path {path!r}: an index needs a name before it (position {position})")
            steps.append(int(match["index"]))
        else:
            if not expect_name:
                raise ValueError(f"JSON path {path!r}: expected '.' or '[' at position {position}")
            steps.append(match["quoted"] if match["quoted"] is not None else match["name"])
            expect_name = False
        position = match.end()
    if expect_name:
        raise ValueError(f"JSON path {path!r}: it must end with a name or an index")
    return tuple(steps)


def extract(document: Any, path: JsonPath) -> str | None:
    """The value at ``path`` as text: strings as they are, numbers and booleans as JSON, objects and lists as
    compact JSON; ``None`` when the path does not exist or holds null.

    Example:
        >>> extract({"a": [{"b": 7}]}, ("a", 0, "b"))
        '7'
    """
    node = document
    for step in path:
        if isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                return None
            node = node[step]
        else:
            if not isinstance(node, dict) or step not in node:
                return None
            node = node[step]
    if node is None:
        return None
    if isinstance(node, str):
        return node
    return json.dumps(node, ensure_ascii=False, separators=(",", ":"))

"""Conversion: text columns of one export file into a canonical staging table, by its mapping spec.

Everything is vectorised with Arrow compute kernels, column by column (a hospital's lab results run to
millions of rows; a per-row Python loop would take minutes). For every row the conversion records the first
column, in spec order, whose value breaks a rule; the orchestrator quarantines those rows with the rule and
a message, and stages the rest.

Rules: ``bad_date`` (no accepted format matches, or the date does not exist), ``bad_number``, ``bad_value``
(no mapping for a code, a pattern does not match, not a boolean), ``required`` (a required or key column is
empty).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from medspace.sources._spec import ColumnSpec, TableSpec

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("s"),
}

_INT = r"^[+-]?\d{1,18}$"
_FLOAT = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"


@dataclass(frozen=True)
class Failure:
    """One way a column's value can break a rule; ``code`` is what the failure array holds."""

    code: int
    column: ColumnSpec
    rule: str
    message: str


@dataclass
class Converted:
    """The canonical columns of every row, and per row the code of its first failure (null: none)."""

    table: pa.Table
    failure: pa.Array
    failures: list[Failure]
    #: For each date or timestamp column, how many values each accepted format parsed (mixed formats show).
    date_formats: dict[str, dict[str, int]] = field(default_factory=dict)


def schema(table: TableSpec) -> pa.Schema:
    """The Arrow schema of a staging table's canonical columns (lineage columns not included)."""
    return pa.schema([pa.field(c.name, ARROW_TYPES[c.type]) for c in table.columns])


def convert(raw: pa.Table, table: TableSpec) -> Converted:
    """Convert the text columns ``raw`` (named as the source names them) into ``table``'s columns."""
    failures: list[Failure] = []
    codes: list[pa.Array] = []
    columns: dict[str, pa.Array] = {}
    date_formats: dict[str, dict[str, int]] = {}
    for column in table.columns:
        required = column.required or column.name in table.primary_key
        value, checks, formats_used = _convert_column(raw, column, table.null_tokens, required)
        columns[column.name] = value
        if formats_used:
            date_formats[column.name] = formats_used
        code: pa.Array | None = None
        # Later checks first, so that the earliest check wins in the nested if_else.
        for rule, message, mask in reversed(checks):
            failure = Failure(len(failures), column, rule, message)
            failures.append(failure)
            scalar = pa.scalar(failure.code, pa.int32())
            code = pc.if_else(mask, scalar, code if code is not None else pa.scalar(None, pa.int32()))
        if code is not None:
            codes.append(code)
    n = raw.num_rows
    if not codes:
        failure = pa.nulls(n, pa.int32())
    elif len(codes) == 1:
        failure = codes[0]
    else:
        failure = pc.coalesce(*codes)
    return Converted(pa.table(columns, schema=schema(table)), failure, failures, date_formats)


def _text(raw: pa.Table, column: ColumnSpec, tokens: list[str]) -> pa.Array:
    """The column's source text with null tokens as nulls; several sources joined by the separator."""
    parts = [raw.column(s).combine_chunks() for s in column.sources]
    token_set = pa.array(tokens, type=pa.string())
    empties = [pc.or_kleene(pc.is_null(p), pc.is_in(p, value_set=token_set)) for p in parts]
    if len(parts) == 1:
        text, empty = parts[0], empties[0]
    else:
        empty = empties[0]
        for e in empties[1:]:
            empty = pc.and_(empty, e)
        # A missing part among present ones leaves the joined text malformed, so the row is quarantined
        # rather than staged with half a timestamp.
        text = pc.binary_join_element_wise(*[pc.fill_null(p, "") for p in parts], column.separator)
    return pc.if_else(empty, pa.scalar(None, pa.string()), text)


def _convert_column(
    raw: pa.Table, column: ColumnSpec, table_tokens: list[str], required: bool
) -> tuple[pa.Array, list[tuple[str, str, pa.Array]], dict[str, int]]:
    tokens = column.null_tokens if column.null_tokens is not None else table_tokens
    text = _text(raw, column, tokens)
    checks: list[tuple[str, str, pa.Array]] = []
    if column.type != "string":
        text = pc.utf8_trim_whitespace(text)
    if column.pattern is not None:
        matched = pc.struct_field(pc.extract_regex(text, pattern=column.pattern), "value")
        checks.append(("bad_value", "the value does not match the column's pattern", _lost(text, matched)))
        text = matched
    if column.values is not None:
        keys = pa.array(list(column.values), type=pa.string())
        mapped = pc.take(
            pa.array(list(column.values.values()), type=pa.string()), pc.index_in(text, value_set=keys)
        )
        if column.unmapped == "keep":
            mapped = pc.coalesce(mapped, text)
        else:
            checks.append(("bad_value", "the code is not in the spec's value mapping", _lost(text, mapped)))
        text = mapped
    value, parse_check, formats_used = _parse(text, column)
    if parse_check is not None:
        checks.append(parse_check)
    if column.on_error == "null":
        # The spec accepts unparseable values as missing (e.g. a lab result "阴性" in the numeric column,
        # kept as text in another column); nothing is quarantined for them.
        checks = []
    if required:
        problem = pc.is_null(value)
        for _, _, mask in checks:
            problem = pc.and_(problem, pc.invert(mask))
        checks.append(("required", "the column is required but empty", problem))
    return value, checks, formats_used


def _lost(before: pa.Array, after: pa.Array) -> pa.Array:
    """Rows that had a value before a step and have none after it."""
    return pc.and_(pc.is_valid(before), pc.is_null(after))


def _parse(
    text: pa.Array, column: ColumnSpec
) -> tuple[pa.Array, tuple[str, str, pa.Array] | None, dict[str, int]]:
    kind = column.type
    if kind == "string":
        return text, None, {}
    if kind in ("int", "float"):
        ok = pc.fill_null(pc.match_substring_regex(text, pattern=_INT if kind == "int" else _FLOAT), False)
        value = pc.cast(pc.if_else(ok, text, pa.scalar(None, pa.string())), ARROW_TYPES[kind])
        message = "the value is not a whole number" if kind == "int" else "the value is not a number"
        return value, ("bad_number", message, _lost(text, value)), {}
    if kind == "bool":
        true_set = pa.array(column.true_values or [], type=pa.string())
        false_set = pa.array(column.false_values or [], type=pa.string())
        is_true = pc.is_in(text, value_set=true_set)
        is_false = pc.is_in(text, value_set=false_set)
        value = pc.if_else(
            is_true, pa.scalar(True), pc.if_else(is_false, pa.scalar(False), pa.scalar(None, pa.bool_()))
        )
        allowed = ", ".join([*(column.true_values or []), *(column.false_values or [])])
        return value, ("bad_value", f"the value is not one of the booleans {allowed}", _lost(text, value)), {}
    formats = column.formats or []
    stamp, used = _parse_timestamps(text, formats)
    value = pc.cast(stamp, pa.date32()) if kind == "date" else stamp
    message = f"the value matches none of the accepted formats ({', '.join(formats)}) or is not a real date"
    return value, ("bad_date", message, _lost(text, stamp)), used


def _parse_timestamps(text: pa.Array, formats: list[str]) -> tuple[pa.Array, dict[str, int]]:
    """Try each format in order on the rows no earlier format parsed; also count what each format parsed.

    Arrow's strptime (glibc underneath) is lenient: it rolls impossible dates over (``2023/2/29`` becomes
    1 March) and accepts short digit runs (``2024011``). A regular expression built from the format refuses
    the second; for the first, a rolled-over date always lands on day 1-3, so only those rows are checked
    against the day written in the text. (Printing every parsed value back with strftime and comparing was
    the first design; it cost 2 s per million rows.)
    """
    result = pa.nulls(len(text), pa.timestamp("s"))
    used: dict[str, int] = {}
    for fmt in formats:
        todo = pc.and_(pc.is_valid(text), pc.is_null(result))
        if not pc.any(todo).as_py():
            break
        subset = pc.filter(text, todo)
        pattern = format_regex(fmt)
        shaped = pc.fill_null(pc.match_substring_regex(subset, pattern=pattern), False)
        parsed = pc.strptime(subset, format=fmt, unit="s", error_is_null=True)
        parsed = pc.if_else(shaped, parsed, pa.scalar(None, pa.timestamp("s")))
        if "%d" in fmt:
            early = pc.fill_null(pc.less_equal(pc.day(parsed), 3), False)
            if pc.any(early).as_py():
                candidates = pc.filter(parsed, early)
                written = pc.cast(
                    pc.struct_field(pc.extract_regex(pc.filter(subset, early), pattern=pattern), "d"),
                    pa.int64(),
                )
                real = pc.fill_null(pc.equal(written, pc.day(candidates)), False)
                kept = pc.if_else(real, candidates, pa.scalar(None, pa.timestamp("s")))
                parsed = pc.replace_with_mask(parsed, early, kept)
        result = pc.replace_with_mask(result, todo, parsed)
        used[fmt] = int(pc.count(parsed).as_py())
    return result, used


_DIRECTIVE_PATTERNS = {
    # (unpadded allowed, fixed width): glibc accepts 1-2 digits; next to another number only 2 are safe.
    "Y": (r"\d{4}", r"\d{4}"),
    "m": (r"(?:0?[1-9]|1[0-2])", r"(?:0[1-9]|1[0-2])"),
    "d": (r"(?P<d>0?[1-9]|[12]\d|3[01])", r"(?P<d>0[1-9]|[12]\d|3[01])"),
    "H": (r"(?:[01]?\d|2[0-3])", r"(?:[01]\d|2[0-3])"),
    "M": (r"[0-5]?\d", r"[0-5]\d"),
    "S": (r"[0-5]?\d", r"[0-5]\d"),
    "f": (r"\d{1,9}", r"\d{1,9}"),
}


_REGEX_SPECIAL = frozenset(".^$*+?()[]{}|\\-")


def format_regex(fmt: str) -> str:
    """An anchored RE2 pattern for the text a strptime format accepts; the day is the group ``d``.

    Example:
        >>> print(format_regex("%Y%m%d"))
        ^\\d{4}(?:0[1-9]|1[0-2])(?P<d>0[1-9]|[12]\\d|3[01])$
    """
    tokens: list[tuple[str, str]] = []  # (kind, text): kind "%" for a directive, "" for a literal
    i = 0
    while i < len(fmt):
        if fmt[i] == "%" and i + 1 < len(fmt):
            if fmt[i + 1] == "%":
                tokens.append(("", "%"))
            else:
                tokens.append(("%", fmt[i + 1]))
            i += 2
        else:
            tokens.append(("", fmt[i]))
            i += 1
    parts = ["^"]
    for n, (kind, value) in enumerate(tokens):
        if kind == "":
            parts.append("\\" + value if value in _REGEX_SPECIAL else value)
            continue
        beside_number = any(0 <= k < len(tokens) and tokens[k][0] == "%" for k in (n - 1, n + 1))
        loose, fixed = _DIRECTIVE_PATTERNS[value]
        parts.append(fixed if beside_number else loose)
    parts.append("$")
    return "".join(parts)

"""Hostile exports, as a hospital's would arrive (issue 9, item 7): each damage ends in the right place.

Every test builds the damaged file, reads it with `read_file`, and counts the file's rows itself, from the
bytes and without the reader, to check that rows read = rows returned + rows rejected, and that each row
carries its physical data line (the line after the header is 1). Messages name the file, row and field and
hold no values.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from medspace.core import InputError
from medspace.sources import ColumnSpec, CsvFormat, NdjsonFormat, TableSpec, XlsxFormat
from medspace.sources._readers import (
    MAX_RECORD_LINES,
    RawFile,
    UnreadableFileError,
    read_file,
    resolve_export_files,
)

HEADER = ["PATIENT_ID", "NAME", "BIRTH_DATE", "WEIGHT"]


def csv_table(encoding: str = "utf-8") -> TableSpec:
    return TableSpec(
        name="patients",
        files="his/*.csv",
        format=CsvFormat(encoding=encoding),
        primary_key=["patient_id"],
        columns=[ColumnSpec(name=name.lower(), source=name) for name in HEADER],
    )


def ndjson_table() -> TableSpec:
    return TableSpec(
        name="studies",
        files="pacs/*.ndjson",
        format=NdjsonFormat(),
        primary_key=["study_id"],
        columns=[
            ColumnSpec(name="study_id", source="id"),
            ColumnSpec(name="patient_name", source="patient.name"),
        ],
    )


def row(i: int) -> str:
    """A clean data line; every third one quotes its name, so a stray quote has quotes to fold into."""
    name = f'"Wang, {i}"' if i % 3 == 0 else f"Li {i}"
    return f"P{i:05d},{name},1980-01-{1 + i % 28:02d},{60 + i % 30}.5\n"


def write(folder: Path, data: bytes, name: str = "his/patients.csv") -> tuple[Path, str]:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path, name


def data_lines(data: bytes) -> int:
    """The file's physical data lines, counted from the bytes: line ends after the header's, plus a last
    line without one."""
    body = data.split(b"\n", 1)[1] if b"\n" in data else b""
    return body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)


def check_accounting(raw: RawFile, expected_rows: int) -> None:
    """Rows in = rows returned + rows rejected, each row once, numbered by physical data line."""
    returned = raw.rows.to_pylist()
    rejected = [r.row for r in raw.rejects]
    assert raw.columns.num_rows == len(returned)
    assert len(returned) + len(rejected) == raw.rows_read == expected_rows
    assert sorted(returned + rejected) == list(range(1, expected_rows + 1))


def id_of(raw: RawFile, number: int) -> str:
    return str(raw.columns.column("PATIENT_ID")[raw.rows.to_pylist().index(number)].as_py())


def test_one_unbalanced_quote_costs_its_line_only(tmp_path: Path) -> None:
    lines = [row(i) for i in range(1, 1001)]
    lines[499] = 'P00500,"Zhao,1980-01-02,61.5\n'  # data line 500: the quote never closes
    data = ("PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\n" + "".join(lines)).encode()
    path, relative = write(tmp_path, data)
    raw = read_file(path, relative, csv_table())
    check_accounting(raw, data_lines(data))
    [reject] = raw.rejects
    assert (reject.row, reject.rule, reject.field) == (500, "unbalanced_quote", "NAME")
    assert "Zhao" not in reject.reason and "Zhao" in reject.raw
    assert id_of(raw, 501) == "P00501" and id_of(raw, 1000) == "P01000"
    assert raw.columns.column("NAME")[raw.rows.to_pylist().index(502)].as_py() == "Li 502"


def test_an_unbalanced_quote_before_thousands_of_unquoted_lines_is_no_field_limit_traceback(
    tmp_path: Path,
) -> None:
    # Python's csv module would read everything after the quote as one field and stop at 131,072 characters.
    lines = [f"P{i:05d},Li {i},1980-01-01,{i}\n" for i in range(1, 5001)]
    lines[9] = 'P00010,"Li 10,1980-01-01,10\n'
    lines[4000] = 'P04001,Li 4001,1980-01-01,"40\n'  # a second one, in the last field
    data = ("PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\n" + "".join(lines)).encode()
    path, relative = write(tmp_path, data)
    raw = read_file(path, relative, csv_table())
    check_accounting(raw, data_lines(data))
    assert [(r.row, r.rule, r.field) for r in raw.rejects] == [
        (10, "unbalanced_quote", "NAME"),
        (4001, "unbalanced_quote", "WEIGHT"),
    ]
    assert id_of(raw, 11) == "P00011" and id_of(raw, 5000) == "P05000"


@pytest.mark.parametrize("slow_path", [False, True], ids=["arrow", "line_by_line"])
def test_a_stray_quote_in_a_quoted_file_does_not_fold_the_next_line_into_its_row(
    tmp_path: Path, slow_path: bool
) -> None:
    # Read leniently, the open quote closes at the next line's first quote and the two lines make one row
    # of the right width: the next patient would vanish into this one's identifier.
    lines = [f'"P{i:05d}","Li {i}","1980-01-01",{i}\n' for i in range(1, 101)]
    lines[49] = '"P00050,Li 50,1980-01-01,50\n'
    if slow_path:
        lines[79] = lines[79].replace("Li", "L\x00i")  # a NUL byte sends the file down the exact path
    data = ("PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\n" + "".join(lines)).encode()
    path, relative = write(tmp_path, data)
    raw = read_file(path, relative, csv_table())
    check_accounting(raw, data_lines(data))
    assert [(r.row, r.rule, r.field) for r in raw.rejects] == [
        (50, "unbalanced_quote", "PATIENT_ID"),
        *([(80, "nul_byte", "NAME")] if slow_path else []),
    ]
    assert id_of(raw, 51) == "P00051" and raw.columns.column("NAME")[49].as_py() == "Li 51"


def test_a_quoted_value_over_several_lines_keeps_the_number_of_its_first_line(tmp_path: Path) -> None:
    data = (
        "PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\n"
        + row(1)
        + 'P00002,"Wang\nsecond line, with a comma\nthird",1980-01-02,61.5\n'  # data lines 2-4
        + row(5)
        + 'P00006,"Zhao,1980-01-02,61.5\n'  # a stray quote right after: line 6 only
        + row(7)
    ).encode()
    path, relative = write(tmp_path, data)
    raw = read_file(path, relative, csv_table())
    assert raw.rows.to_pylist() == [1, 2, 5, 7]
    assert raw.columns.column("NAME")[1].as_py() == "Wang\nsecond line, with a comma\nthird"
    assert [(r.row, r.rule) for r in raw.rejects] == [(6, "unbalanced_quote")]
    # Records, counted by hand: lines 2-4 are one record, every other line is one.
    assert raw.rows_read == data_lines(data) - 2 == 5


def test_a_quoted_value_longer_than_the_look_ahead_is_quarantined_line_by_line(tmp_path: Path) -> None:
    long_value = "\n".join(f"note line {i}" for i in range(MAX_RECORD_LINES + 5))
    data = f'PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\nP00001,"{long_value}",1980-01-01,60\n{row(2)}'.encode()
    path, relative = write(tmp_path, data)
    raw = read_file(path, relative, csv_table())
    check_accounting(raw, data_lines(data))
    assert raw.rejects[0].row == 1 and raw.rejects[0].rule == "unbalanced_quote"
    assert raw.rows.to_pylist() == [data_lines(data)]  # the clean line after it is read


def test_a_file_cut_inside_its_last_unquoted_number_quarantines_that_row(tmp_path: Path) -> None:
    whole = "PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\n" + "".join(row(i) for i in range(1, 101))
    cut = whole[: whole.rindex(".5\n")]  # '...,89' of '...,89.5': a valid but wrong number
    data = cut.encode()
    path, relative = write(tmp_path, data)
    raw = read_file(path, relative, csv_table())
    check_accounting(raw, data_lines(data))
    [reject] = raw.rejects
    assert (reject.row, reject.rule, reject.field) == (100, "truncated_row", "WEIGHT")
    assert "89" not in reject.reason and "line end" in reject.reason
    assert raw.rows.to_pylist() == list(range(1, 100))


def test_a_file_cut_mid_row_or_inside_a_quote_quarantines_that_row(tmp_path: Path) -> None:
    whole = "PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\n" + "".join(row(i) for i in range(1, 101))
    for cut, field in ((whole.rindex(",1980"), "NAME"), (whole.rindex('"Wang') + 3, "NAME")):
        data = whole[:cut].encode()
        path, relative = write(tmp_path, data)
        raw = read_file(path, relative, csv_table())
        check_accounting(raw, data_lines(data))
        assert [(r.row, r.rule, r.field) for r in raw.rejects] == [(data_lines(data), "truncated_row", field)]


def test_a_last_line_without_line_end_is_staged_when_its_last_value_is_quoted_and_closed(
    tmp_path: Path,
) -> None:
    data = b'PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\nP00001,Li,1980-01-01,"60.5"\nP00002,Li,1980-01-01,"61.5"'
    path, relative = write(tmp_path, data)
    raw = read_file(path, relative, csv_table())
    check_accounting(raw, data_lines(data))
    assert raw.rejects == [] and raw.columns.column("WEIGHT").to_pylist() == ["60.5", "61.5"]
    # The same over two lines: the quoted value closes on the last line (staged), never closes (its first
    # line is an unbalanced quote, the cut line truncated), or is unquoted (two lines, the second cut).
    for last, rows, rejected in (
        ('"61\n.5"', [1, 2], []),
        ('"61\n.5', [1], [(2, "unbalanced_quote"), (3, "truncated_row")]),
        ("61\n.5", [1, 2], [(3, "truncated_row")]),
    ):
        data = f"PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\n{row(1)}P00002,Li,1980-01-01,{last}".encode()
        path, relative = write(tmp_path, data)
        raw = read_file(path, relative, csv_table())
        assert raw.rows.to_pylist() == rows and [(r.row, r.rule) for r in raw.rejects] == rejected


def test_a_stray_carriage_return_costs_its_row_and_shifts_no_number(tmp_path: Path) -> None:
    lines = [row(i) for i in range(1, 51)]
    lines[2] = "P00003,Li\r3,1980-01-03,62.5\n"  # a bare CR inside an unquoted field of data line 3
    lines[5] = 'P00006,"Wang\r6",1980-01-06,65.5\n'  # inside quotes it is part of the value
    data = ("PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\n" + "".join(lines)).encode()
    path, relative = write(tmp_path, data)
    raw = read_file(path, relative, csv_table())
    check_accounting(raw, data_lines(data))
    [reject] = raw.rejects
    assert (reject.row, reject.rule, reject.field) == (3, "stray_carriage_return", "NAME")
    assert [id_of(raw, n) for n in (4, 6, 50)] == ["P00004", "P00006", "P00050"]
    assert raw.columns.column("NAME")[raw.rows.to_pylist().index(6)].as_py() == "Wang\r6"


def test_a_carriage_return_at_the_start_of_a_line_makes_no_extra_row(tmp_path: Path) -> None:
    # Arrow reads it as an empty line of its own (a row of empty values) and a multi-line value elsewhere
    # gives the count back: the counts agree, the rows do not.
    lines = [row(i) for i in range(1, 11)]
    lines[1] = "\r" + lines[1]
    lines[6] = 'P00007,"Wang\nover two lines",1980-01-07,66.5\n'
    data = ("PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\n" + "".join(lines)).encode()
    path, relative = write(tmp_path, data)
    raw = read_file(path, relative, csv_table())
    assert [(r.row, r.rule, r.field) for r in raw.rejects] == [(2, "stray_carriage_return", "PATIENT_ID")]
    assert raw.rows.to_pylist() == [1, 3, 4, 5, 6, 7, 9, 10, 11]
    assert raw.rows_read == data_lines(data) - 1


def test_a_quote_left_open_on_the_last_line_is_not_staged(tmp_path: Path) -> None:
    # Arrow closes the quote at the end of the file and keeps the line end in the value.
    data = (
        "PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\n" + row(1) + row(2) + 'P00003,"Li 3,1980-01-03,62.5\n'
    ).encode()
    path, relative = write(tmp_path, data)
    raw = read_file(path, relative, csv_table())
    check_accounting(raw, data_lines(data))
    assert [(r.row, r.rule, r.field) for r in raw.rejects] == [(3, "unbalanced_quote", "NAME")]


def test_crlf_line_ends_count_one_line_each(tmp_path: Path) -> None:
    lines = [row(i).replace("\n", "\r\n") for i in range(1, 21)]
    lines[3] = 'P00004,"Wang\r\nsecond",1980-01-04,63.5\r\n'  # a value over two lines: lines 4-5
    data = ("PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\r\n" + "".join(lines)).encode()
    path, relative = write(tmp_path, data)
    raw = read_file(path, relative, csv_table())
    assert raw.rejects == []
    assert raw.rows.to_pylist() == [1, 2, 3, 4, *range(6, 22)]
    assert raw.rows_read == data_lines(data) - 1
    assert raw.columns.column("WEIGHT")[0].as_py() == "61.5"  # no '\r' left on the last value


def test_nul_bytes_are_quarantined_never_staged(tmp_path: Path) -> None:
    lines = [row(i) for i in range(1, 31)]
    lines[4] = "P00005,Li 5,1980-\x0001-05,64.5\n"
    lines[20] = 'P00021,"Wang\x00",1980-01-21,60.5\n'
    data = ("PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\n" + "".join(lines)).encode()
    path, relative = write(tmp_path, data)
    raw = read_file(path, relative, csv_table())
    check_accounting(raw, data_lines(data))
    assert [(r.row, r.rule, r.field) for r in raw.rejects] == [
        (5, "nul_byte", "BIRTH_DATE"),
        (21, "nul_byte", "NAME"),
    ]
    for name in raw.columns.column_names:
        assert not any("\x00" in v for v in raw.columns.column(name).to_pylist())


def test_nul_bytes_in_ndjson_are_quarantined(tmp_path: Path) -> None:
    documents = [json.dumps({"id": f"S{i}", "patient": {"name": f"Li {i}"}}) for i in range(1, 11)]
    documents[2] = '{"id": "S3", "patient": {"name": "Li\\u0000 3"}}'  # an escaped NUL in a value
    data = ("\n".join(documents) + "\n").encode().replace(b'"S7"', b'"S\x007"')  # and a raw one
    path, relative = write(tmp_path, data, "pacs/studies.ndjson")
    raw = read_file(path, relative, ndjson_table())
    assert raw.rows_read == data.count(b"\n") == raw.columns.num_rows + len(raw.rejects)
    assert [(r.row, r.rule, r.field) for r in raw.rejects] == [
        (3, "nul_byte", "patient.name"),
        (7, "nul_byte", None),
    ]
    assert raw.rows.to_pylist() == [1, 2, 4, 5, 6, 8, 9, 10]


def test_a_symbolic_link_out_of_the_export_folder_is_refused_by_name(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    outside, _ = write(tmp_path, ("PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\n" + row(1)).encode(), "elsewhere/x.csv")
    inside, _ = write(exports, ("PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\n" + row(2)).encode(), "his/a.csv")
    (exports / "his" / "b.csv").symlink_to(outside)
    (exports / "his" / "c.csv").symlink_to(inside)  # a link inside the folder is fine
    (exports / "linked").symlink_to(outside.parent, target_is_directory=True)  # so is no linked folder
    (exports / "his" / "d.csv").symlink_to(exports / "his" / "nowhere.csv")
    found = resolve_export_files(exports, "his/*.csv")
    assert [p.name for p in found] == ["a.csv", "b.csv", "c.csv", "d.csv"]
    assert read_file(exports / "his" / "c.csv", "his/c.csv", csv_table()).rows_read == 1
    for path, rule in (
        (exports / "his" / "b.csv", "outside_export"),
        (exports / "linked" / "x.csv", "outside_export"),
        (exports / "his" / "d.csv", "unreadable_file"),
    ):
        relative = path.relative_to(exports).as_posix()
        with pytest.raises(UnreadableFileError) as caught:
            read_file(path, relative, csv_table())
        assert caught.value.rule == rule and caught.value.file == relative
        assert str(caught.value).startswith(f"{relative}: ")


def test_a_utf8_bom_breaks_neither_the_first_ndjson_line_nor_the_csv_header(tmp_path: Path) -> None:
    documents = [json.dumps({"id": f"S{i}", "patient": {"name": f"Li {i}"}}) for i in range(1, 4)]
    data = b"\xef\xbb\xbf" + ("\n".join(documents) + "\n").encode()
    path, relative = write(tmp_path, data, "pacs/studies.ndjson")
    raw = read_file(path, relative, ndjson_table())
    assert raw.rejects == [] and raw.rows.to_pylist() == [1, 2, 3] == list(range(1, data.count(b"\n") + 1))
    assert raw.columns.column("id").to_pylist() == ["S1", "S2", "S3"]
    data = b"\xef\xbb\xbf" + ("PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\n" + row(1) + row(2)).encode()
    for encoding in ("utf-8", "utf-8-sig"):
        path, relative = write(tmp_path, data)
        raw = read_file(path, relative, csv_table(encoding))
        assert raw.header == HEADER and raw.rejects == []
        check_accounting(raw, data_lines(data))


def test_a_gbk_file_declared_utf8_quarantines_the_rows_that_do_not_decode(tmp_path: Path) -> None:
    lines = [row(i) for i in range(1, 41)]
    lines[6] = "P00007,王 7,1980-01-07,66.5\n"
    lines[30] = "P00031,李 31,1980-01-31,60.5\n"
    data = ("PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\n" + "".join(lines)).encode("gbk")
    path, relative = write(tmp_path, data)
    raw = read_file(path, relative, csv_table())
    check_accounting(raw, data_lines(data))
    assert [(r.row, r.rule, r.field) for r in raw.rejects] == [
        (7, "encoding", "NAME"),
        (31, "encoding", "NAME"),
    ]
    assert raw.unreadable is None
    assert "utf-8" in raw.rejects[0].reason and "\\x" in raw.rejects[0].raw
    assert id_of(raw, 8) == "P00008"


def test_a_file_where_no_row_decodes_is_unreadable_as_a_whole(tmp_path: Path) -> None:
    data = (
        "PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\n" + "".join(f"P{i},王{i},1980-01-01,60\n" for i in range(9))
    ).encode("gbk")
    path, relative = write(tmp_path, data)
    raw = read_file(path, relative, csv_table())
    check_accounting(raw, data_lines(data))
    assert {r.rule for r in raw.rejects} == {"encoding"}
    assert isinstance(raw.unreadable, InputError) and raw.unreadable.rule == "encoding"
    assert raw.unreadable.file == relative
    documents = "".join(
        json.dumps({"id": f"S{i}", "patient": {"name": f"王{i}"}}, ensure_ascii=False) + "\n"
        for i in range(3)
    )
    path, relative = write(tmp_path, documents.encode("gbk"), "pacs/studies.ndjson")
    raw = read_file(path, relative, ndjson_table())
    assert raw.rows_read == 3 == len(raw.rejects) and raw.unreadable is not None


@pytest.mark.parametrize(
    ("name", "content", "table", "rule"),
    [
        ("his/missing.csv", None, csv_table(), "unreadable_file"),
        ("his/a_folder.csv", "folder", csv_table(), "unreadable_file"),
        ("his/empty.csv", b"", csv_table(), "no_header"),
        (
            "his/cut.csv.gz",
            gzip.compress(("PATIENT_ID,NAME\n" + row(1) * 50).encode())[:40],
            csv_table(),
            "unreadable_file",
        ),
        ("his/utf16.csv", "PATIENT_ID,NAME\n".encode("utf-16-le"), csv_table(), "encoding"),
        ("pacs/missing.ndjson", None, ndjson_table(), "unreadable_file"),
        ("insurance/not_a_workbook.xlsx", b"PK\x03\x04 not really", None, "unreadable_file"),
        ("insurance/missing.xlsx", None, None, "unreadable_file"),
    ],
)
def test_a_whole_file_that_cannot_be_read_is_one_clear_error(
    tmp_path: Path, name: str, content: bytes | str | None, table: TableSpec | None, rule: str
) -> None:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    if table is None:
        table = TableSpec(
            name="settlements",
            files="insurance/*.xlsx",
            format=XlsxFormat(sheet="结算清单"),
            primary_key=["settlement_id"],
            columns=[ColumnSpec(name="settlement_id", source="结算ID")],
        )
    with pytest.raises(UnreadableFileError) as caught:
        read_file(path, name, table)
    assert caught.value.rule == rule and caught.value.file == name
    assert "Traceback" not in str(caught.value) and str(caught.value).startswith(f"{name}: ")


def test_gzip_exports_are_read_like_plain_ones(tmp_path: Path) -> None:
    data = ("PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\n" + "".join(row(i) for i in range(1, 21))).encode()
    damaged = data.replace(b"P00004,Li 4", b'P00004,"Li 4')
    for content, rejected in ((data, []), (damaged, [(4, "unbalanced_quote")])):
        path, relative = write(tmp_path, gzip.compress(content), "his/patients.csv.gz")
        raw = read_file(path, relative, csv_table())
        check_accounting(raw, data_lines(content))
        assert [(r.row, r.rule) for r in raw.rejects] == rejected


def test_messages_hold_no_values(tmp_path: Path) -> None:
    lines = [row(i) for i in range(1, 11)]
    lines[1] = 'P00002,"Secret,1980-01-02,61.5\n'
    lines[3] = "P00004,Secret\r,1980-01-04,61.5\n"
    lines[5] = "P00006,Secret\x00,1980-01-06,61.5\n"
    lines[7] = "P00008,Secret,1980-01-08,61.5,extra\n"
    data = ("PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\n" + "".join(lines) + "P00011,Secret,1980-01-11,6").encode()
    path, relative = write(tmp_path, data)
    raw = read_file(path, relative, csv_table())
    check_accounting(raw, data_lines(data))
    assert [r.rule for r in raw.rejects] == [
        "unbalanced_quote",
        "stray_carriage_return",
        "nul_byte",
        "field_count",
        "truncated_row",
    ]
    for reject in raw.rejects:
        assert "Secret" not in reject.reason and "P000" not in reject.reason
        assert "Secret" in reject.raw


def test_the_line_by_line_reader_reads_a_clean_file_as_arrow_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medspace.sources import _readers

    lines = [row(i) for i in range(1, 31)]
    lines[3] = 'P00004,"Wang\nover two lines",1980-01-04,63.5\n'
    lines[6] = "\n"  # an empty line: a row of empty values on both paths
    lines[9] = 'P00010,"Wang ""Jr""",1980-01-10,61.5\r\n'
    lines[12] = 'P00013,Li "13",1980-01-13,62.5\n'  # a quote inside an unquoted field is kept
    lines[15] = 'P00016,"Li"16,1980-01-16,62.5\n'  # text after a closing quote is kept, as Arrow does
    lines[18] = f"P00019,{'x' * 200_000},1980-01-19,62.5\n"  # over Python csv's default field limit
    data = ("PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\n" + "".join(lines)).encode()
    path, relative = write(tmp_path, data)
    fast = read_file(path, relative, csv_table())
    monkeypatch.setattr(_readers, "_read_csv_arrow", lambda *args: None)  # no block goes through Arrow
    slow = _readers._read_csv_lines(path, relative, CsvFormat(), HEADER)
    assert fast.rejects == slow.rejects == []
    assert fast.rows.to_pylist() == slow.rows.to_pylist() == [*range(1, 5), *range(6, 32)]
    assert fast.columns.equals(slow.columns)
    assert fast.rows_read == slow.rows_read == data_lines(data) - 1


def test_damage_in_some_blocks_of_a_long_file_leaves_the_other_blocks_to_arrow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from medspace.sources import _readers

    monkeypatch.setattr(_readers, "_BLOCK_LINES", 4)  # blocks of lines 1-4, 5-8, 9-12, ...
    lines = [row(i) for i in range(1, 41)]
    lines[6] = 'P00007,"Wang\nover\nthree lines",1980-01-07,66.5\n'  # lines 7-9, over a block boundary
    lines[13] = lines[13].replace("Li", "L\x00i")  # data line 16 (two lines more before it)
    lines[20] = 'P00021,"Zhao,1980-01-21,60.5\n'  # data line 23
    lines[25] = "P00026,Li\r26,1980-01-26,65.5\n"  # data line 28
    data = ("PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\n" + "".join(lines)).encode()
    path, relative = write(tmp_path, data)
    raw = _readers._read_csv_lines(path, relative, CsvFormat(), HEADER)
    assert [(r.row, r.rule) for r in raw.rejects] == [
        (16, "nul_byte"),
        (23, "unbalanced_quote"),
        (28, "stray_carriage_return"),
    ]
    assert raw.rows_read == data_lines(data) - 2  # lines 7-9 are one record
    kept = [n for n in range(1, data_lines(data) + 1) if n not in (8, 9, 16, 23, 28)]
    assert raw.rows.to_pylist() == kept
    ids = [f"P{i:05d}" for i in range(1, 41) if i not in (14, 21, 26)]
    assert raw.columns.column("PATIENT_ID").to_pylist() == ids
    assert raw.columns.column("NAME")[6].as_py() == "Wang\nover\nthree lines"


def test_a_file_without_read_permission_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests may run as root, who reads any file: the refusal is simulated where the reader opens files.
    from medspace.sources import _readers

    def refuse(path: Path) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    path, relative = write(tmp_path, ("PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\n" + row(1)).encode())
    monkeypatch.setattr(_readers, "open_export", refuse)
    with pytest.raises(UnreadableFileError) as caught:
        read_file(path, relative, csv_table())
    assert caught.value.rule == "unreadable_file" and "Permission denied" in str(caught.value)
    assert str(caught.value).startswith(f"{relative}: ")


def test_random_damage_reads_the_same_on_every_path_and_accounts_for_every_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Arrow's fast path, the exact path in blocks (of 1 to 3 lines, so that records cross them) and line by
    line must agree on every file, damaged or not, and account for every physical line."""
    import random

    from medspace.sources import _readers

    pieces = [
        "P1",
        "Li",
        '"Wang, x"',
        '"a""b"',
        '"two\nlines"',
        "",
        '"',
        "\r",
        "\x00",
        "\n",
        ",",
        '"x"y',
        "王",
    ]
    rng = random.Random(7)
    arrow = _readers._read_csv_arrow
    path = tmp_path / "his" / "p.csv"
    path.parent.mkdir()
    for _ in range(300):
        lines = []
        for _ in range(rng.randint(0, 10)):
            line = ",".join(rng.choice(pieces[:6]) for _ in range(4))
            if rng.random() < 0.3:
                at = rng.randint(0, len(line))
                line = line[:at] + rng.choice(pieces) + line[at:]
            lines.append(line + ("\r\n" if rng.random() < 0.1 else "\n"))
        text = "PATIENT_ID,NAME,BIRTH_DATE,WEIGHT\n" + "".join(lines)
        if rng.random() < 0.3:
            text = text[: rng.randint(35, max(35, len(text)))]
        data = text.encode()
        if rng.random() < 0.1:
            data = data.replace("王".encode(), "王".encode("gbk"))
        path.write_bytes(data)
        results = []
        for blocks, through_arrow in ((1 << 16, True), (rng.randint(1, 3), True), (1 << 16, False)):
            monkeypatch.setattr(_readers, "_BLOCK_LINES", blocks)
            monkeypatch.setattr(_readers, "_read_csv_arrow", arrow if through_arrow else lambda *a: None)
            raw = (
                read_file(path, "his/p.csv", csv_table())
                if not results
                else _readers._read_csv_lines(path, "his/p.csv", CsvFormat(), HEADER)
            )
            numbers = raw.rows.to_pylist() + [r.row for r in raw.rejects]
            assert raw.rows_read == raw.columns.num_rows + len(raw.rejects) == len(set(numbers))
            assert all(1 <= n <= data_lines(data) for n in numbers), data
            results.append(
                (raw.rows.to_pylist(), raw.columns.to_pylist(), [(r.row, r.rule) for r in raw.rejects])
            )
        assert results[0] == results[1] == results[2], data

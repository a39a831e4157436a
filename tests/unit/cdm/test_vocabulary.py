"""Open vocabularies: loading Athena downloads and OMOP exports' vocabularies, mapping source codes to
standard concepts, and the site's Usagi overlay. Results are re-derived by independent routes: Python's csv
module over the source files, a brute-force ``Maps to`` join in plain Python, and the concept ids OHDSI's own
Synthea ETL wrote into the clinical tables."""

from __future__ import annotations

import csv
import io
import os
import zipfile
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import duckdb
import ibis
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from medspace.cdm import (
    QUARANTINE_SCHEMA,
    SourceCodeMapping,
    Vocabulary,
    VocabularyReport,
    cdm_schema,
    load_vocabulary,
    map_source_codes,
)
from medspace.cli import app
from medspace.core import CATALOG, InputError

# ../shared beside the repository (the main checkout or a worktree), as the issue asks.
REPOSITORY = Path(__file__).resolve().parents[3]
SYNTHEA_ZIP = REPOSITORY.parent / "shared" / "data" / "omop-synthea27nj" / "Synthea27Nj_5.4.zip"

VOCAB_FILES = (
    "CONCEPT.csv",
    "CONCEPT_RELATIONSHIP.csv",
    "CONCEPT_ANCESTOR.csv",
    "CONCEPT_SYNONYM.csv",
    "VOCABULARY.csv",
    "DOMAIN.csv",
    "CONCEPT_CLASS.csv",
    "RELATIONSHIP.csv",
    "DRUG_STRENGTH.csv",
    "SOURCE_TO_CONCEPT_MAP.csv",
)


@pytest.fixture(scope="session")
def synthea_vocab_zip() -> Path:
    if not SYNTHEA_ZIP.exists():
        message = f"shared reference data (Synthea27Nj) is missing at {SYNTHEA_ZIP}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return SYNTHEA_ZIP


def _csv_rows(archive: Path, name: str) -> list[dict[str, str]]:
    with zipfile.ZipFile(archive) as z:
        return list(csv.DictReader(io.StringIO(z.read(name).decode("utf-8"))))


@pytest.fixture(scope="module")
def synthea_rows(synthea_vocab_zip: Path) -> dict[str, list[dict[str, str]]]:
    """The vocabulary and clinical CSVs the tests re-read, parsed by the csv module (not DuckDB)."""
    names = (*VOCAB_FILES, "CONDITION_OCCURRENCE.csv", "MEASUREMENT.csv", "DRUG_EXPOSURE.csv")
    names += ("PROCEDURE_OCCURRENCE.csv", "OBSERVATION.csv")
    return {name: _csv_rows(synthea_vocab_zip, name) for name in names}


@pytest.fixture(scope="module")
def synthea_vocab(
    synthea_vocab_zip: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[VocabularyReport, Path]:
    workspace = tmp_path_factory.mktemp("vocab")
    return load_vocabulary(synthea_vocab_zip, workspace), workspace


# --- loading -----------------------------------------------------------------------------------------------


def test_the_synthea_zip_loads_every_vocabulary_table(
    synthea_vocab: tuple[VocabularyReport, Path], synthea_rows: dict[str, list[dict[str, str]]]
) -> None:
    report, workspace = synthea_vocab
    for name in VOCAB_FILES:
        table = Path(name).stem.lower()
        expected = len(synthea_rows[name])
        counts = report.table(table)
        assert (counts.rows_read, counts.rows_loaded, counts.rows_quarantined) == (expected, expected, 0)
        assert counts.delimiter == "comma"
        path = workspace / "vocab" / f"{table}.parquet"
        assert pq.read_schema(path).equals(cdm_schema()[table].arrow_schema(), check_metadata=True)
        assert pq.read_metadata(path).num_rows == expected
    assert report.concepts == 2_294
    assert report.table("concept_relationship").rows_loaded == 266_588
    assert "Synthea27Nj_5.4.zip/PERSON.csv" in report.skipped
    assert pq.read_metadata(workspace / "vocab" / "quarantine.parquet").num_rows == 0
    # Values survive typing: the csv module's view of CONCEPT equals the Parquet's.
    concept = pq.read_table(workspace / "vocab" / "concept.parquet").to_pylist()
    assert [(c["concept_id"], c["concept_code"], c["standard_concept"]) for c in concept] == [
        (int(r["concept_id"]), r["concept_code"], r["standard_concept"] or None)
        for r in synthea_rows["CONCEPT.csv"]
    ]
    assert str(concept[0]["valid_start_date"]) == synthea_rows["CONCEPT.csv"][0]["valid_start_date"]


def test_the_catalogue_gains_a_vocab_schema(synthea_vocab: tuple[VocabularyReport, Path]) -> None:
    _, workspace = synthea_vocab
    with duckdb.connect(str(workspace / CATALOG), read_only=True) as con:
        rows = con.execute("SELECT count(*) FROM vocab.concept").fetchall()
    assert rows == [(2_294,)]


def test_an_extracted_folder_loads_as_the_zip_does(
    synthea_vocab_zip: Path, synthea_vocab: tuple[VocabularyReport, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "export"
    with zipfile.ZipFile(synthea_vocab_zip) as z:
        for name in ("CONCEPT.csv", "CONCEPT_RELATIONSHIP.csv", "VOCABULARY.csv"):
            z.extract(name, folder)
    report = load_vocabulary(folder, tmp_path / "ws")
    assert report.table("concept_ancestor").file is None  # absent: written empty, and said so
    assert pq.read_metadata(tmp_path / "ws" / "vocab" / "concept_ancestor.parquet").num_rows == 0
    for table in ("concept", "concept_relationship"):
        ours = pq.read_table(tmp_path / "ws" / "vocab" / f"{table}.parquet")
        theirs = pq.read_table(synthea_vocab[1] / "vocab" / f"{table}.parquet")
        assert ours.equals(theirs), table


def _athena_line(row: dict[str, str], columns: list[str]) -> str:
    # Athena's format: tab-separated, no quoting, dates as YYYYMMDD.
    values = [row[c].replace("-", "") if c.endswith("_date") else row[c] for c in columns]
    return "\t".join(values)


def test_an_athena_download_is_tab_separated_unquoted_with_compact_dates(
    synthea_vocab: tuple[VocabularyReport, Path],
    synthea_rows: dict[str, list[dict[str, str]]],
    tmp_path: Path,
) -> None:
    athena = tmp_path / "athena"
    athena.mkdir()
    for name in ("CONCEPT.csv", "CONCEPT_RELATIONSHIP.csv"):
        rows = synthea_rows[name]
        columns = list(rows[0])
        lines = ["\t".join(columns), *(_athena_line(r, columns) for r in rows)]
        (athena / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = load_vocabulary(athena, tmp_path / "ws")
    assert report.table("concept").delimiter == "tab"
    for table in ("concept", "concept_relationship"):
        ours = pq.read_table(tmp_path / "ws" / "vocab" / f"{table}.parquet")
        assert ours.equals(pq.read_table(synthea_vocab[1] / "vocab" / f"{table}.parquet")), table


CONCEPT_HEADER = (
    "concept_id\tconcept_name\tdomain_id\tvocabulary_id\tconcept_class_id\tstandard_concept\tconcept_code\t"
    "valid_start_date\tvalid_end_date\tinvalid_reason"
)


def test_bad_lines_are_quarantined_with_file_row_and_field(tmp_path: Path) -> None:
    athena = tmp_path / "athena"
    athena.mkdir()
    lines = [
        CONCEPT_HEADER,
        '1\t5" nail\tDevice\tSNOMED\tPhysical Object\tS\t1001\t19700101\t20991231\t',  # a lone quote is text
        "2\ttoo few fields\tDevice",  # data row 2: does not split into the header's columns
        "x3\tBad id\tDevice\tSNOMED\tPhysical Object\tS\t1003\t19700101\t20991231\t",  # row 3: not an integer
        "4\tBad date\tDevice\tSNOMED\tPhysical Object\tS\t1004\t19700132\t20991231\t",  # row 4: no such day
        "5\tFine\tDevice\tSNOMED\tPhysical Object\t\t1005\t19700101\t20991231\tD",
        "6\t\tDevice\tSNOMED\tPhysical Object\t\t1006\t19700101\t20991231\t",  # row 6: required name empty
        '7\t"Quoted" start\tDevice\tSNOMED\tPhysical Object\t\t1007\t19700101\t20991231\t',
    ]
    (athena / "CONCEPT.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = load_vocabulary(athena, tmp_path / "ws")
    concept = report.table("concept")
    assert (concept.rows_read, concept.rows_loaded, concept.rows_quarantined) == (7, 3, 4)
    loaded = pq.read_table(tmp_path / "ws" / "vocab" / "concept.parquet").to_pylist()
    assert [(c["concept_id"], c["concept_name"]) for c in loaded] == [
        (1, '5" nail'),
        (5, "Fine"),
        (7, '"Quoted" start'),
    ]
    quarantine = pq.read_table(tmp_path / "ws" / "vocab" / "quarantine.parquet")
    assert quarantine.schema.equals(QUARANTINE_SCHEMA)
    found = {(q["file"], q["row"], q["field"], q["rule"]) for q in quarantine.to_pylist()}
    # The short line names its first missing column: it has concept_id, concept_name and domain_id only.
    assert found == {
        ("athena/CONCEPT.csv", 2, "vocabulary_id", "shape"),
        ("athena/CONCEPT.csv", 3, "concept_id", "type"),
        ("athena/CONCEPT.csv", 4, "valid_start_date", "type"),
        ("athena/CONCEPT.csv", 6, "concept_name", "required"),
    }


def test_a_missing_concept_file_is_a_named_error(tmp_path: Path) -> None:
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "VOCABULARY.csv").write_text("vocabulary_id,vocabulary_name,vocabulary_concept_id\nX,X,0\n")
    with pytest.raises(InputError, match="no CONCEPT file") as caught:
        load_vocabulary(folder, tmp_path / "ws")
    assert caught.value.field == "CONCEPT.csv"
    assert not (tmp_path / "ws" / "vocab").exists()


def test_a_symlink_is_listed_never_followed(tmp_path: Path) -> None:
    outside = _tiny_vocabulary(tmp_path / "outside", [(1, "Condition", "ICD10CM", None, "E11.9")], [])
    folder = tmp_path / "download"
    folder.mkdir()
    (folder / "CONCEPT.csv").symlink_to(outside / "CONCEPT.csv")
    with pytest.raises(InputError, match="no CONCEPT file"):
        load_vocabulary(folder, tmp_path / "ws")


def test_a_failed_load_leaves_the_previous_vocabulary(tmp_path: Path) -> None:
    folder = _tiny_vocabulary(tmp_path / "v", concepts=[(1, "Condition", "ICD10CM", None, "E11.9")], maps=[])
    workspace = tmp_path / "ws"
    load_vocabulary(folder, workspace)
    before = (workspace / "vocab" / "concept.parquet").read_bytes()
    bad = tmp_path / "usagi.csv"
    bad.write_text("code,target\nA,1\n")
    with pytest.raises(InputError, match="not a mapping file"):
        load_vocabulary(folder, workspace, usagi=bad)
    assert (workspace / "vocab" / "concept.parquet").read_bytes() == before


# --- mapping -----------------------------------------------------------------------------------------------


def _brute_force(
    csv_rows: dict[str, list[dict[str, str]]], codes: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, int, set[int]]]:
    """(source_concept_id, chosen concept_id, all targets) per code, by loops over the CSV rows."""
    concepts = {int(r["concept_id"]): r for r in csv_rows["CONCEPT.csv"]}
    by_code = {(r["vocabulary_id"], r["concept_code"]): int(r["concept_id"]) for r in concepts.values()}
    maps_to: dict[int, set[int]] = defaultdict(set)
    for r in csv_rows["CONCEPT_RELATIONSHIP.csv"]:
        target = concepts.get(int(r["concept_id_2"]))
        if (
            r["relationship_id"] == "Maps to"
            and not r["invalid_reason"]
            and target is not None
            and target["standard_concept"] == "S"
            and not target["invalid_reason"]
        ):
            maps_to[int(r["concept_id_1"])].add(int(r["concept_id_2"]))
    result = {}
    for code in codes:
        source = by_code.get(code, 0)
        targets = maps_to.get(source, set())
        domain = concepts[source]["domain_id"] if source else None
        chosen = min(targets, key=lambda t: (concepts[t]["domain_id"] != domain, t)) if targets else 0
        result[code] = (source, chosen, targets)
    return result


def test_every_concept_code_maps_as_a_brute_force_join_says(
    synthea_vocab: tuple[VocabularyReport, Path], synthea_rows: dict[str, list[dict[str, str]]]
) -> None:
    codes = sorted({(r["vocabulary_id"], r["concept_code"]) for r in synthea_rows["CONCEPT.csv"]})
    codes += [("SNOMED", "no-such-code"), ("ICD10CM", "E11.9")]
    expected = _brute_force(synthea_rows, codes)
    with Vocabulary.open(synthea_vocab[1]) as vocabulary:
        mapped = vocabulary.map_source_codes(
            pa.table({"vocabulary_id": [c[0] for c in codes], "source_code": [c[1] for c in codes]})
        )
    got = mapped.rows.to_pylist()
    assert [(r["vocabulary_id"], r["source_code"]) for r in got] == codes  # input order kept
    for row in got:
        source, chosen, _ = expected[(row["vocabulary_id"], row["source_code"])]
        assert (row["source_concept_id"], row["concept_id"]) == (source, chosen), row
    targets: dict[tuple[str, str], set[int]] = defaultdict(set)
    for t in mapped.targets.to_pylist():
        targets[(t["vocabulary_id"], t["source_code"])].add(t["target_concept_id"])
    assert {k: v for k, v in targets.items()} == {k: e[2] for k, e in expected.items() if e[2]}
    assert mapped.rows_unmapped == sum(1 for e in expected.values() if e[1] == 0)
    assert (mapped.codes, mapped.codes_mapped) == (len(codes), mapped.rows_mapped)
    # UCUM's updated (invalid_reason U) units map to their valid replacements, as Athena says.
    assert 2_200 < mapped.rows_mapped < len(codes)


@pytest.mark.parametrize(
    ("table", "source", "source_concept", "concept"),
    [
        (
            "CONDITION_OCCURRENCE",
            "condition_source_value",
            "condition_source_concept_id",
            "condition_concept_id",
        ),
        (
            "MEASUREMENT",
            "measurement_source_value",
            "measurement_source_concept_id",
            "measurement_concept_id",
        ),
        ("DRUG_EXPOSURE", "drug_source_value", "drug_source_concept_id", "drug_concept_id"),
        (
            "PROCEDURE_OCCURRENCE",
            "procedure_source_value",
            "procedure_source_concept_id",
            "procedure_concept_id",
        ),
        (
            "OBSERVATION",
            "observation_source_value",
            "observation_source_concept_id",
            "observation_concept_id",
        ),
    ],
)
def test_synthea_source_values_map_to_the_concepts_ohdsis_etl_wrote(
    synthea_vocab: tuple[VocabularyReport, Path],
    synthea_rows: dict[str, list[dict[str, str]]],
    table: str,
    source: str,
    source_concept: str,
    concept: str,
) -> None:
    vocabulary_of = {r["concept_id"]: r["vocabulary_id"] for r in synthea_rows["CONCEPT.csv"]}
    rows = synthea_rows[f"{table}.csv"]
    codes = pa.table(
        {
            "vocabulary_id": [vocabulary_of.get(r[source_concept]) for r in rows],
            "source_code": [r[source] for r in rows],
        }
    )
    mapped = map_source_codes(synthea_vocab[1], codes)
    assert mapped.rows.column("concept_id").to_pylist() == [int(r[concept]) for r in rows]
    assert mapped.rows.column("source_concept_id").to_pylist() == [int(r[source_concept]) for r in rows]
    assert mapped.rows_mapped == sum(int(r[concept]) != 0 for r in rows)


def test_dropping_the_relationship_row_unmaps_the_code(
    synthea_vocab_zip: Path,
    synthea_vocab: tuple[VocabularyReport, Path],
    synthea_rows: dict[str, list[dict[str, str]]],
    tmp_path: Path,
) -> None:
    # Otitis media (SNOMED 65363002, concept 372328), the first condition of the Synthea data, is standard and
    # Maps to itself; its one Maps to row is taken from the file itself.
    concept = next(r for r in synthea_rows["CONCEPT.csv"] if r["concept_id"] == "372328")
    code = (concept["vocabulary_id"], concept["concept_code"])
    [row] = [
        r
        for r in synthea_rows["CONCEPT_RELATIONSHIP.csv"]
        if r["concept_id_1"] == "372328" and r["relationship_id"] == "Maps to"
    ]
    codes = pa.table({"vocabulary_id": [code[0]] * 3, "source_code": [code[1]] * 3})
    folder = tmp_path / "export"
    with zipfile.ZipFile(synthea_vocab_zip) as z:
        z.extract("CONCEPT.csv", folder)
        text = z.read("CONCEPT_RELATIONSHIP.csv").decode("utf-8")
    intact = map_source_codes(synthea_vocab[1], codes)
    assert intact.rows.column("concept_id").to_pylist() == [int(row["concept_id_2"])] * 3
    line = ",".join(row.values())
    assert text.count(f"\n{line}\n") == 1
    broken = map_source_codes(_load(folder, text.replace(f"\n{line}\n", "\n"), tmp_path / "broken"), codes)
    assert broken.rows.column("concept_id").to_pylist() == [0, 0, 0]
    assert broken.rows.column("source_concept_id").to_pylist() == [372328] * 3  # the code is still known
    assert (broken.rows_mapped, broken.rows_unmapped) == (0, 3)
    assert broken.unmapped().to_pylist() == [{"vocabulary_id": code[0], "source_code": code[1], "rows": 3}]


def _load(folder: Path, relationships: str, workspace: Path) -> Path:
    (folder / "CONCEPT_RELATIONSHIP.csv").write_text(relationships, encoding="utf-8")
    load_vocabulary(folder, workspace)
    return workspace


Concept = tuple[int, str, str, str | None, str]  # id, domain, vocabulary, standard, code


def _tiny_vocabulary(
    folder: Path,
    concepts: list[Concept],
    maps: list[tuple[int, int, str | None]],
    invalid: Iterable[int] = (),
) -> Path:
    folder.mkdir(parents=True)
    lines = [CONCEPT_HEADER.replace("\t", ",")]
    for concept_id, domain, vocabulary, standard, code in concepts:
        reason = "D" if concept_id in set(invalid) else ""
        lines.append(
            f"{concept_id},Concept {concept_id},{domain},{vocabulary},Class,{standard or ''},{code},"
            f"1970-01-01,2099-12-31,{reason}"
        )
    (folder / "CONCEPT.csv").write_text("\n".join(lines) + "\n")
    rel = ["concept_id_1,concept_id_2,relationship_id,valid_start_date,valid_end_date,invalid_reason"]
    rel += [f"{a},{b},Maps to,1970-01-01,2099-12-31,{reason or ''}" for a, b, reason in maps]
    (folder / "CONCEPT_RELATIONSHIP.csv").write_text("\n".join(rel) + "\n")
    return folder


@pytest.fixture()
def icd_workspace(tmp_path: Path) -> Path:
    concepts: list[Concept] = [
        (10, "Condition", "ICD10CM", None, "E11.9"),
        (
            11,
            "Condition",
            "ICD10CM",
            None,
            "E119",
        ),  # the same code written without its dot, as another concept
        (12, "Condition", "ICD10CM", None, "I10"),
        (20, "Procedure", "ICD9Proc", None, "81.51"),
        (30, "Drug", "NDC", None, "0001"),
        (31, "Condition", "ICD10CM", None, "J45.9"),
        (100, "Condition", "SNOMED", "S", "44054006"),
        (101, "Condition", "SNOMED", "S", "38341003"),
        (102, "Observation", "SNOMED", "S", "9999"),
        (103, "Condition", "SNOMED", "S", "195967001"),
        (200, "Procedure", "SNOMED", "S", "52734007"),
        (300, "Drug", "RxNorm", "S", "1"),
        (301, "Drug", "RxNorm", "S", "2"),
        (302, "Drug", "RxNorm", None, "3"),  # not standard: never a target
    ]
    maps: list[tuple[int, int, str | None]] = [
        (10, 100, None),
        (11, 101, None),
        (12, 102, None),  # several targets: the one in the source's domain wins, though its id is larger
        (12, 101, None),
        (20, 200, None),
        (30, 301, None),
        (30, 300, None),
        (30, 302, None),
        (31, 103, "D"),  # an invalid relationship maps nothing
    ]
    folder = _tiny_vocabulary(tmp_path / "v", concepts, maps)
    load_vocabulary(folder, tmp_path / "ws")
    return tmp_path / "ws"


def _map(workspace: Path, codes: list[tuple[str | None, str | None]]) -> SourceCodeMapping:
    table = pa.table(
        {"vocabulary_id": [c[0] for c in codes], "source_code": [c[1] for c in codes]},
        schema=pa.schema([("vocabulary_id", pa.string()), ("source_code", pa.string())]),
    )
    return map_source_codes(workspace, table)


def test_codes_match_with_and_without_their_dot(icd_workspace: Path) -> None:
    mapped = _map(
        icd_workspace,
        [
            ("ICD10CM", "E11.9"),
            ("ICD10CM", "E119"),
            ("ICD10CM", " E11.9 "),
            ("ICD9Proc", "8151"),
            ("ICD10CM", "I.10"),
        ],
    )
    rows = mapped.rows.to_pylist()
    assert [(r["source_concept_id"], r["source_match"], r["concept_id"]) for r in rows] == [
        (10, "exact", 100),
        (11, "exact", 101),  # an exact match beats the dot-free one
        (10, "exact", 100),  # surrounding spaces are trimmed
        (20, "without_dot", 200),
        (12, "without_dot", 101),
    ]
    assert rows[2]["source_code"] == " E11.9 "  # the code as given is kept


def test_several_targets_are_all_kept_and_one_is_chosen(icd_workspace: Path) -> None:
    mapped = _map(icd_workspace, [("ICD10CM", "I10"), ("NDC", "0001")])
    assert mapped.rows.column("concept_id").to_pylist() == [101, 300]
    assert mapped.rows.column("target_count").to_pylist() == [2, 2]
    targets = [
        (t["source_code"], t["target_concept_id"], t["target_rank"], t["mapped_by"])
        for t in mapped.targets.to_pylist()
    ]
    assert targets == [
        ("I10", 101, 1, "athena"),
        ("I10", 102, 2, "athena"),
        ("0001", 300, 1, "athena"),
        ("0001", 301, 2, "athena"),
    ]


def test_invalid_relationships_unknown_codes_and_nulls_give_zero(icd_workspace: Path) -> None:
    mapped = _map(
        icd_workspace, [("ICD10CM", "J45.9"), ("ICD10CM", "Z99"), (None, "E11.9"), ("ICD10CM", None)]
    )
    rows = mapped.rows.to_pylist()
    assert [(r["source_concept_id"], r["concept_id"], r["mapped_by"]) for r in rows] == [
        (31, 0, None),
        (0, 0, None),
        (0, 0, None),
        (0, 0, None),
    ]
    assert (mapped.rows_mapped, mapped.rows_unmapped, mapped.share_mapped) == (0, 4, 0.0)
    assert mapped.unknown_vocabularies == ()
    misnamed = _map(icd_workspace, [("ICD10", "E11.9"), ("ICD10CM", "E11.9")])
    assert misnamed.rows.column("concept_id").to_pylist() == [0, 100]
    assert misnamed.unknown_vocabularies == ("ICD10",)


def test_ibis_tables_are_accepted(icd_workspace: Path) -> None:
    codes = ibis.memtable({"vocabulary_id": ["ICD10CM"], "source_code": ["E11.9"], "extra": [1]})
    assert map_source_codes(icd_workspace, codes).rows.column("concept_id").to_pylist() == [100]


def test_missing_columns_and_workspaces_are_named(icd_workspace: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="source_code") as caught:
        map_source_codes(icd_workspace, pa.table({"vocabulary_id": ["ICD10CM"]}))
    assert caught.value.field == "source_code"
    with pytest.raises(InputError, match="vocab load"):
        Vocabulary.open(tmp_path / "empty")


# --- the site's Usagi overlay ------------------------------------------------------------------------------

USAGI_HEADER = (
    "sourceCode,sourceName,sourceFrequency,sourceAutoAssignedConceptIds,matchScore,mappingStatus,"
    "statusSetBy,statusSetOn,conceptId,mappingType,comment,createdBy,createdOn,equivalence,assignedReviewer"
)


def _usagi(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """Usagi's mapping export (WriteCodeMappingsToFile's columns); rows are (code, status, concept, type)."""
    lines = [USAGI_HEADER]
    for code, status, concept, kind in rows:
        lines.append(f'{code},"Name, of {code}",12,,0.9,{status},me,0,{concept},{kind},,me,0,EQUAL,')
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_approved_usagi_mapping_wins_over_athena(tmp_path: Path) -> None:
    concepts: list[Concept] = [
        (10, "Condition", "ICD10CM", None, "E11.9"),
        (12, "Condition", "ICD10CM", None, "I10"),
        (100, "Condition", "SNOMED", "S", "44054006"),
        (101, "Condition", "SNOMED", "S", "38341003"),
        (102, "Condition", "SNOMED", None, "1"),
    ]
    folder = _tiny_vocabulary(tmp_path / "v", concepts, [(10, 100, None), (12, 101, None)])
    usagi = _usagi(
        tmp_path / "usagi.csv",
        [
            ("E11.9", "APPROVED", "101", "MAPS_TO"),  # overrides Athena's 100
            ("I10", "UNCHECKED", "100", "MAPS_TO"),  # not approved: Athena's 101 stands
            ("I10", "APPROVED", "100", "MAPS_TO_VALUE"),  # a value mapping, not the code's
            ("Q99", "APPROVED", "100", "MAPS_TO"),  # a code Athena lacks
            ("Q98", "APPROVED", "nope", "MAPS_TO"),  # row 5: not a concept id
            ("Q97", "APPROVED", "102", "MAPS_TO"),  # row 6: not a standard concept
            ("Q96", "APPROVED", "0", "MAPS_TO"),  # reviewed: no matching concept
        ],
    )
    report = load_vocabulary(folder, tmp_path / "ws", usagi=usagi, usagi_vocabulary_id="ICD10CM")
    overlay = report.overlay
    assert overlay is not None and overlay.shape == "usagi"
    assert (overlay.rows_read, overlay.rows_loaded, overlay.rows_quarantined) == (7, 3, 2)
    assert overlay.rows_excluded == {"not_approved": 1, "not_maps_to": 1}
    assert overlay.rows_read == overlay.rows_loaded + overlay.rows_quarantined + sum(
        overlay.rows_excluded.values()
    )
    quarantine = pq.read_table(tmp_path / "ws" / "vocab" / "quarantine.parquet").to_pylist()
    assert {(q["file"], q["row"], q["field"], q["rule"]) for q in quarantine} == {
        ("usagi.csv", 5, "conceptId", "type"),
        ("usagi.csv", 6, "conceptId", "target_standard"),
    }
    stcm = pq.read_table(tmp_path / "ws" / "vocab" / "source_to_concept_map.parquet").to_pylist()
    assert {(r["source_code"], r["target_concept_id"], r["target_vocabulary_id"]) for r in stcm} == {
        ("E11.9", 101, "SNOMED"),
        ("Q99", 100, "SNOMED"),
        ("Q96", 0, "None"),
    }
    mapped = _map(
        tmp_path / "ws",
        [
            ("ICD10CM", "E11.9"),
            ("ICD10CM", "E119"),
            ("ICD10CM", "I10"),
            ("ICD10CM", "Q99"),
            ("ICD10CM", "Q96"),
        ],
    )
    assert [(r["source_concept_id"], r["concept_id"], r["mapped_by"]) for r in mapped.rows.to_pylist()] == [
        (10, 101, "site"),
        (10, 101, "site"),
        (12, 101, "athena"),
        (0, 100, "site"),
        (0, 0, "site"),
    ]


def test_the_site_file_replaces_the_downloads_own_rows_for_its_codes(tmp_path: Path) -> None:
    concepts: list[Concept] = [
        (100, "Measurement", "LOINC", "S", "2345-7"),
        (101, "Measurement", "LOINC", "S", "1"),
    ]
    folder = _tiny_vocabulary(tmp_path / "v", concepts, [])
    header = (
        "source_code,source_concept_id,source_vocabulary_id,source_code_description,target_concept_id,"
        "target_vocabulary_id,valid_start_date,valid_end_date,invalid_reason\n"
    )
    (folder / "SOURCE_TO_CONCEPT_MAP.csv").write_text(
        header + "GLU,0,HOSP_LAB,Glucose,101,LOINC,1970-01-01,2099-12-31,\n"
        "NA,0,HOSP_LAB,Sodium,101,LOINC,1970-01-01,2099-12-31,\n"
    )
    usagi = _usagi(tmp_path / "usagi.csv", [("GLU", "APPROVED", "100", "MAPS_TO")])
    report = load_vocabulary(folder, tmp_path / "ws", usagi=usagi, usagi_vocabulary_id="HOSP_LAB")
    assert report.overlay is not None and report.overlay.rows_replaced == 1
    mapped = _map(tmp_path / "ws", [("HOSP_LAB", "GLU"), ("HOSP_LAB", "NA")])
    assert mapped.rows.column("concept_id").to_pylist() == [100, 101]
    assert mapped.targets.num_rows == 2


def test_a_usagi_export_needs_its_vocabulary(tmp_path: Path) -> None:
    folder = _tiny_vocabulary(tmp_path / "v", [(1, "Condition", "ICD10CM", None, "E11.9")], [])
    usagi = _usagi(tmp_path / "usagi.csv", [("E11.9", "APPROVED", "0", "MAPS_TO")])
    with pytest.raises(InputError, match="--usagi-vocabulary"):
        load_vocabulary(folder, tmp_path / "ws", usagi=usagi)


def test_a_source_to_concept_map_csv_overlays_local_codes(tmp_path: Path) -> None:
    concepts: list[Concept] = [
        (100, "Measurement", "LOINC", "S", "2345-7"),
        (101, "Measurement", "LOINC", "S", "1"),
    ]
    folder = _tiny_vocabulary(tmp_path / "v", concepts, [])
    stcm = tmp_path / "stcm.csv"
    stcm.write_text(
        "source_code,source_concept_id,source_vocabulary_id,source_code_description,target_concept_id,"
        "target_vocabulary_id,valid_start_date,valid_end_date,invalid_reason\n"
        "GLU,0,HOSP_LAB,Glucose,100,LOINC,1970-01-01,2099-12-31,\n"
        "OLD,0,HOSP_LAB,Retired,101,LOINC,1970-01-01,2010-12-31,D\n"
        "K,0,HOSP_LAB,Potassium,101,LOINC,19700101,not a date,\n"
    )
    report = load_vocabulary(folder, tmp_path / "ws", usagi=stcm)
    assert report.overlay is not None
    assert (report.overlay.shape, report.overlay.rows_loaded, report.overlay.rows_quarantined) == (
        "source_to_concept_map",
        1,
        1,
    )
    assert report.overlay.rows_excluded == {"invalid": 1}
    mapped = _map(tmp_path / "ws", [("HOSP_LAB", "GLU"), ("HOSP_LAB", "OLD"), ("HOSP_LAB", "K")])
    assert mapped.rows.column("concept_id").to_pylist() == [100, 0, 0]
    assert mapped.unmapped().column("source_code").to_pylist() == ["K", "OLD"]


# --- command line ------------------------------------------------------------------------------------------


def test_the_cli_loads_and_looks_up(synthea_vocab_zip: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    workspace = tmp_path / "ws"
    loaded = runner.invoke(app, ["vocab", "load", str(synthea_vocab_zip), "--workspace", str(workspace)])
    assert loaded.exit_code == 0, loaded.output
    assert "concept_relationship" in loaded.output and "266,588" in loaded.output
    looked = runner.invoke(app, ["vocab", "map", "SNOMED", "65363002", "--workspace", str(workspace)])
    assert looked.exit_code == 0, looked.output
    assert "372328" in looked.output and "athena mapping" in looked.output
    missing = runner.invoke(app, ["vocab", "load", str(tmp_path / "nothing"), "--workspace", str(workspace)])
    assert missing.exit_code == 1 and "does not exist" in missing.output

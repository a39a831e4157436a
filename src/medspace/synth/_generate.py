"""Generates a whole synthetic hospital: the population, then chunk after chunk of events, written as each
system's exports plus a ground truth, into a temporary folder that replaces the output only when complete.

Chunks are independent given the seed and their index, so any number of worker processes produce the same
bytes; the parent writes chunks strictly in order and keeps at most a few in memory.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from numpy.typing import NDArray

from medspace.core import InputError, replace_folder

from ._catalogue import Catalogue, load_catalogue
from ._config import HospitalConfig
from ._exports import build_chunk
from ._population import Population, draw_population, name_pools
from ._sink import CORRECTION_FIELDS, DEFECT_FIELDS, KEY_CONFLICT_FIELDS, ChunkOutput
from ._writers import ExportWriters

TRUTH = "truth"


@dataclass(frozen=True)
class ExportFile:
    """One file the hospital exported."""

    system: str
    path: str  # relative to the output folder
    format: str
    rows: int
    bytes: int


@dataclass(frozen=True)
class HospitalSummary:
    """What `generate_hospital` wrote."""

    out: Path
    patients: int
    seconds: float
    files: list[ExportFile]
    defects: dict[str, int] = field(default_factory=dict)
    kpis: dict[str, float] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


def generate_hospital(
    config: HospitalConfig, out: Path, progress: Callable[[int, int], None] | None = None
) -> HospitalSummary:
    """Write one synthetic hospital's exports and its ground truth into ``out``.

    The folder is built beside ``out`` and swapped in only when complete, so a failed run leaves the previous
    hospital untouched. The same config always gives byte-identical files.

    Args:
        config: size, seed, period, workers and defect rates.
        out: the folder to (re)place; one sub-folder per system and ``truth/``.
        progress: called as ``progress(done_patients, total_patients)`` after every chunk.

    Returns:
        A summary of the files written, the injected defects and the true KPIs.

    Raises:
        InputError: if ``out`` exists and is not a folder this command wrote.

    Example:
        >>> import tempfile
        >>> summary = generate_hospital(HospitalConfig(patients=200, seed=1), Path(tempfile.mkdtemp()) / "h")
        >>> summary.patients
        200
    """
    began = time.perf_counter()
    out = Path(out)
    if out.exists() and not (out / TRUTH / "manifest.json").exists() and any(out.iterdir()):
        raise InputError(
            "the output folder exists and was not written by `medspace synth`; choose an empty or new folder",
            file=str(out),
        )
    with replace_folder(out) as tmp:
        summary = _generate_into(config, tmp, progress)
    return HospitalSummary(
        out=out,
        patients=config.patients,
        seconds=time.perf_counter() - began,
        files=summary[0],
        defects=summary[1],
        kpis=summary[2],
    )


def _doctors(catalogue: Catalogue, seed: int) -> NDArray[np.str_]:
    pools = name_pools(tuple(sorted(catalogue.hospital.local_regions)))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    given = np.concatenate([pools.given_male, pools.given_female])
    names = np.char.add(
        np.char.add(rng.choice(pools.surnames, 400, p=pools.surname_p), rng.choice(given, 400)),
        rng.choice(given, 400),
    )
    return np.unique(names)


def _chunk_job(
    catalogue: Catalogue,
    config: HospitalConfig,
    pop: Population,
    index: int,
    first: int,
    doctors: NDArray[np.str_],
) -> ChunkOutput:
    return build_chunk(catalogue, config, pop, index, first, doctors)


def _chunks(
    config: HospitalConfig, catalogue: Catalogue, pop: Population, doctors: NDArray[np.str_]
) -> Iterator[ChunkOutput]:
    size = config.chunk_patients
    starts = list(range(0, config.patients, size))
    if config.workers == 1 or len(starts) == 1:
        for i, first in enumerate(starts):
            yield build_chunk(catalogue, config, pop.slice(first, first + size), i, first, doctors)
        return
    # Keep only a few chunks in flight: results are large and the writer consumes them in order.
    with ProcessPoolExecutor(max_workers=config.workers) as pool:
        pending: list[Future[ChunkOutput]] = []
        next_chunk = 0
        while next_chunk < len(starts) or pending:
            while next_chunk < len(starts) and len(pending) < config.workers + 1:
                first = starts[next_chunk]
                pending.append(
                    pool.submit(
                        _chunk_job,
                        catalogue,
                        config,
                        pop.slice(first, first + size),
                        next_chunk,
                        first,
                        doctors,
                    )
                )
                next_chunk += 1
            yield pending.pop(0).result()


def _generate_into(
    config: HospitalConfig, out: Path, progress: Callable[[int, int], None] | None
) -> tuple[list[ExportFile], dict[str, int], dict[str, float]]:
    catalogue = load_catalogue()
    pop = draw_population(catalogue, config.patients, config.seed, config.start)
    doctors = _doctors(catalogue, config.seed)
    (out / TRUTH).mkdir()
    if config.as_of is None:
        _write_persons(pop, catalogue, out / TRUTH / "persons.parquet")
    present: set[str] = set()  # an as-of export's truth holds only the persons its records are about
    corrections: list[list[object]] = []
    conflicts: list[list[object]] = []

    writers = ExportWriters(out)
    eligible: Counter[str] = Counter()
    kpi: Counter[str] = Counter()
    defect_counts: Counter[str] = Counter()
    truth_writers: dict[str, pq.ParquetWriter] = {}

    def truth_table(name: str, table: pa.Table) -> None:
        if name not in truth_writers:
            truth_writers[name] = pq.ParquetWriter(
                out / TRUTH / f"{name}.parquet", table.schema, compression="zstd"
            )
        truth_writers[name].write_table(table)

    done = 0
    try:
        # Written up front so the file exists, with its schema, even for a hospital without defects.
        truth_table("defects", _defect_table([], {}))
        for chunk in _chunks(config, catalogue, pop, doctors):
            offsets = writers.offsets()
            writers.write(chunk)
            truth_table("records", _record_table(chunk, offsets))
            if chunk.links:
                names = ("kind", "from_file", "from_key", "to_file", "to_key")
                truth_table(
                    "links",
                    pa.table(dict(zip(names, map(list, zip(*chunk.links, strict=True)), strict=True))),
                )
            if chunk.visits is not None:
                truth_table("visits", chunk.visits)
            if chunk.note_phi is not None and chunk.note_phi.num_rows:
                truth_table("note_phi", chunk.note_phi)
            # Defects stream out chunk by chunk: a million-patient hospital has millions of them.
            truth_table("defects", _defect_table(chunk.defects, offsets))
            defect_counts.update(d[0] for d in chunk.defects)
            conflicts.extend(
                [*k[:7], ";".join(f"{file}#{key}" for file, key in k[7])] for k in chunk.key_conflicts
            )
            if config.as_of is not None:
                for fc in chunk.files.values():
                    present.update(fc.person_id.tolist())
                present.update(d[6] for d in chunk.defects)
                corrections.extend(
                    [*row[:2], row[2] + offsets.get(row[1], 0) + 1, *row[3:]] for row in chunk.corrections
                )
            eligible.update(chunk.eligible)
            kpi.update(chunk.kpi)
            done += chunk.patients
            if progress is not None:
                progress(done, config.patients)
    finally:
        writers.close()
        for w in truth_writers.values():
            w.close()

    if config.as_of is not None:
        keep = np.isin(pop.person_id, np.array(sorted(present), dtype=pop.person_id.dtype))
        _write_persons(_persons_of(pop, keep), catalogue, out / TRUTH / "persons.parquet")
        # the identity values of this export that the later (full) export writes otherwise
        _write_csv(CORRECTION_FIELDS, corrections, out / TRUTH / "corrections.csv")
    rates = config.defects
    if rates.newborn_parent_id or rates.reused_inpatient_no:
        _write_csv(KEY_CONFLICT_FIELDS, conflicts, out / TRUTH / "key_conflicts.csv")
    kpis = _kpis(kpi)
    (out / TRUTH / "kpis.json").write_text(
        json.dumps(kpis, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    files = writers.summary()
    integrated = config.profile == "integrated"
    reporting_end = config.cut - dt.timedelta(days=0 if integrated else config.defects.sync_lag_days)
    manifest = {
        "generator": "medspace synth",
        # workers do not change the output; the tertiary profile's manifest stays as it was before profiles
        "config": _config_record(config),
        "row_numbering": (
            "row = 1-based data row: CSV line minus the header, NDJSON line, XLSX row minus the header"
            + (", TSV line minus the header" if integrated else "")
        ),
        "files": [
            {
                "system": f.system,
                "path": f.path,
                "format": f.format,
                "rows": f.rows,
                "bytes": f.bytes,
                "sha256": _sha256(out / f.path),
            }
            for f in files
        ],
        "defects": dict(sorted(defect_counts.items())),
        "eligible": dict(sorted(eligible.items())),
        "inpatient_number_scheme": (
            "per admission (admission_no: a new 住院号 for every stay)"
            if integrated
            else "per patient (住院号 kept across admissions; 住院次数 counts them)"
        ),
        **(
            {}
            if config.as_of is None
            else {
                "as_of": {
                    "cut": config.as_of.isoformat(),
                    "note": "the hospital's export as it stood on this day (exclusive): the full export of "
                    "the same config without as_of holds every record of this one under the same keys; "
                    "corrections.csv lists the identity values it corrects",
                }
            }
        ),
        "reporting_period": {
            "start": config.start.isoformat(),
            "end": reporting_end.isoformat(),
            "note": "kpis.json counts this period (end exclusive); "
            + (
                "the integrated HIS exports from its own database, so nothing lags"
                if integrated
                else "it closes at the HIS sync cut-off"
            ),
        },
    }
    (out / TRUTH / "manifest.json").write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return files, dict(sorted(defect_counts.items())), kpis


# Fields added after the manifest's layout was fixed: left out while they cannot matter, so a default
# hospital's manifest (and its digest) stays as it was.
_LATER_DEFECT_FIELDS = ("identity_corrected_later", "newborn_parent_id", "reused_inpatient_no")


def _config_record(config: HospitalConfig) -> dict[str, object]:
    """The configuration as the manifest records it."""
    integrated = config.profile == "integrated"
    record = config.model_dump(
        mode="json", exclude={"workers"} if integrated else {"workers", "profile", "integrated"}
    )
    defects = record["defects"]
    if config.as_of is None:
        del record["as_of"]
        del defects["identity_corrected_later"]
    for name in ("newborn_parent_id", "reused_inpatient_no"):
        if defects[name] == 0:
            del defects[name]
    return record


def _persons_of(pop: Population, keep: NDArray[np.bool_]) -> Population:
    return Population(
        **{name: getattr(pop, name)[keep] for name in pop.__dataclass_fields__ if name != "condition_keys"},
        condition_keys=pop.condition_keys,
    )


def _write_csv(names: tuple[str, ...], rows: list[list[object]], path: Path) -> None:
    """A ground-truth table as CSV (a ``row`` column is an integer, the rest text)."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    table = pa.table(
        {
            name: pa.array(list(values), pa.int64() if name == "row" else pa.string())
            for name, values in zip(names, columns, strict=True)
        }
    )
    pacsv.write_csv(table, path)


def _record_table(chunk: ChunkOutput, offsets: dict[str, int]) -> pa.Table:
    """The true person and record key of every row the chunk added, numbered as rows of the files."""
    return pa.concat_tables(
        [
            pa.table(
                {
                    "file": pa.array([path] * fc.table.num_rows, pa.string()),
                    "row": pa.array(np.arange(1, fc.table.num_rows + 1) + offsets.get(path, 0), pa.int64()),
                    "person_id": pa.array(fc.person_id, pa.string()),
                    "record_key": pa.array(fc.record_key, pa.string()),
                }
            )
            for path, fc in chunk.files.items()
        ]
    )


def _defect_table(
    defects: list[tuple[str, str, str, int, str, str, str, str]], offsets: dict[str, int]
) -> pa.Table:
    """Defects with their chunk positions turned into 1-based rows of the files (null: row withheld)."""
    columns = list(zip(*defects, strict=True)) if defects else [() for _ in DEFECT_FIELDS]
    rows = [
        None if pos < 0 else pos + offsets.get(file, 0) + 1
        for file, pos in zip(columns[2], columns[3], strict=True)
    ]
    return pa.table(
        {
            name: pa.array(
                rows if name == "row" else list(values), pa.int64() if name == "row" else pa.string()
            )
            for name, values in zip(DEFECT_FIELDS, columns, strict=True)
        }
    )


def _kpis(k: Counter[str]) -> dict[str, float]:
    """True KPIs by the official definitions of domain.md §2, from the true events."""

    def ratio(a: float, b: float) -> float:
        return round(a / b, 6) if b else 0.0

    outpatient_revenue = k["outpatient_revenue_cents"] / 100
    inpatient_cost = k["inpatient_cost_cents"] / 100
    return {
        "outpatient_visits": k["outpatient_visits"],
        "emergency_visits": k["emergency_visits"],
        "checkup_visits": k["checkup_visits"],
        "registrations": k["registrations"],
        "discharges": k["discharges"],
        "outpatient_visits_per_discharge": ratio(k["outpatient_visits"], k["discharges"]),
        "operated_discharges": k["operated_discharges"],
        "operated_discharge_share": ratio(k["operated_discharges"], k["discharges"]),
        "operations": k["operations"],
        "operation_sessions": k["operation_sessions"],
        "minimally_invasive_operations": k["minimally_invasive_operations"],
        "minimally_invasive_share": ratio(k["minimally_invasive_operations"], k["operations"]),
        "grade4_operations": k["grade4_operations"],
        "grade4_share": ratio(k["grade4_operations"], k["operations"]),
        "elective_operations": k["elective_operations"],
        "day_surgery_operations": k["day_surgery_operations"],
        "day_surgery_share": ratio(k["day_surgery_operations"], k["elective_operations"]),
        "outpatient_revenue": round(outpatient_revenue, 2),
        "cost_per_outpatient_visit": ratio(outpatient_revenue, k["outpatient_visits"]),
        "inpatient_cost": round(inpatient_cost, 2),
        "cost_per_discharge": ratio(inpatient_cost, k["discharges"]),
        "bed_days": k["bed_days"],
        "average_length_of_stay": ratio(k["bed_days"], k["discharges"]),
        "recalled_discharges": k["recalled_discharges"],
    }


def _write_persons(pop: Population, catalogue: Catalogue, path: Path) -> None:
    keys = np.array(pop.condition_keys)
    table = pa.table(
        {
            "person_id": pop.person_id,
            "name": pop.name,
            "sex": pop.sex,
            "birth_date": pa.array(pop.birth_day.astype("datetime64[D]")),
            "resident_id": pop.resident_id,
            "region_code": pop.region_code,
            "phone": pop.phone,
            "province": pop.province,
            "city": pop.city,
            "district": pop.district,
            "street": pop.street,
            "conditions": pa.array([keys[row].tolist() for row in pop.conditions], pa.list_(pa.string())),
        }
    )
    pq.write_table(table, path, compression="zstd")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

"""The ``medspace`` command line: one command (later, one command group) per stage.

The CLI holds no logic. Each command parses its options, calls the stage's Python API, renders the result with
rich, and turns a `MedspaceError` into its exit code and a one-line message on stderr, without a traceback.
Stages are imported inside the commands, so ``medspace --help`` stays fast and works whichever stages are
installed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from medspace.core import ConfigError, MedspaceError

if TYPE_CHECKING:
    from medspace.core import EngineName

app = typer.Typer(
    name="medspace",
    help=(
        "medspace turns one hospital's system exports (HIS, LIS, EMR, RIS/PACS, anaesthesia/surgery, "
        "insurance settlement) into compliant, tradeable medical data products: read, link, harmonise to "
        "OMOP CDM, check quality, de-identify, package, list on an exchange and analyse in an enclave."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """medspace: from hospital system exports to compliant medical data products."""
    # An explicit callback keeps `medspace synth` a sub-command while synth is the only command; without it
    # typer would collapse a one-command app into that command.


def _size(n_bytes: int) -> str:
    """Format a byte count for people: 1023 B, 1.5 KiB, 12.0 MiB."""
    size = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n_bytes} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover - the loop always returns at GiB


@app.command()
def synth(
    patients: Annotated[int, typer.Option(min=1, help="Number of patients in the hospital.")],
    seed: Annotated[int, typer.Option(min=0, help="Random seed; the same seed gives the same files.")],
    out: Annotated[Path, typer.Option(help="Folder to write the hospital's exports and ground truth into.")],
    years: Annotated[int, typer.Option(min=1, help="Years of activity to simulate.")] = 1,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes generating patients.")] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", help="Do not show the progress bar.")] = False,
    profile: Annotated[
        str,
        typer.Option(
            help="Vendor profile: 'tertiary' (HIS, LIS, EMR, RIS/PACS, surgery, insurance) or 'integrated' "
            "(one integrated HIS with the lab, and a regional platform's FHIR R4 export)."
        ),
    ] = "tertiary",
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Write the same hospital's export as it stood on this day (YYYY-MM-DD, exclusive): an "
            "earlier export whose records keep their keys in the full one.",
        ),
    ] = None,
) -> None:
    """Generate a synthetic hospital: every system's exports, with defects, and a ground truth."""
    # Imported here, not at module top: `medspace --help` must not pay for (or depend on) the generator.
    from pydantic import ValidationError

    from medspace.synth import HospitalConfig, generate_hospital

    # At least 110 columns so file paths are not cut when output goes to a pipe or CI log.
    stdout = Console(highlight=False, width=max(shutil.get_terminal_size().columns, 110))
    stderr = Console(stderr=True, highlight=False)
    try:
        try:
            # validated as the other options are (a dict: mypy cannot see str narrowed to the Literal)
            config = HospitalConfig.model_validate(
                {
                    "patients": patients,
                    "seed": seed,
                    "years": years,
                    "workers": workers,
                    "profile": profile,
                    **({} if as_of is None else {"as_of": as_of}),
                }
            )
        except ValidationError as exc:
            # Translate at the boundary: the user gave options, not a pydantic model.
            problems = "; ".join(
                f"--{'.'.join(str(part) for part in err['loc']).replace('_', '-')}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigError(f"invalid options: {problems}") from exc
        if quiet:
            summary = generate_hospital(config, out)
        else:
            with Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("patients"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=stderr,
            ) as progress:
                task = progress.add_task("generating", total=patients)

                def report(done: int, total: int) -> None:
                    progress.update(task, completed=done, total=total)

                summary = generate_hospital(config, out, progress=report)
    except MedspaceError as exc:
        stderr.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(code=exc.exit_code) from None

    files = Table(title="files written")
    files.add_column("system")
    files.add_column("file")
    files.add_column("format")
    files.add_column("rows", justify="right")
    files.add_column("size", justify="right")
    for file in summary.files:
        files.add_row(file.system, file.path, file.format, f"{file.rows:,}", _size(file.bytes))
    stdout.print(files)

    defects = Table(title="injected defects")
    defects.add_column("kind")
    defects.add_column("count", justify="right")
    for kind, count in sorted(summary.defects.items()):
        defects.add_row(kind, f"{count:,}")
    stdout.print(defects)

    kpis = Table(title="true KPIs (truth/kpis.json, by the official definitions)")
    kpis.add_column("KPI")
    kpis.add_column("value", justify="right")
    for name in (
        "outpatient_visits",
        "discharges",
        "outpatient_visits_per_discharge",
        "operated_discharge_share",
        "minimally_invasive_share",
        "grade4_share",
        "day_surgery_share",
        "cost_per_outpatient_visit",
        "cost_per_discharge",
        "average_length_of_stay",
    ):
        value = summary.kpis[name]
        kpis.add_row(name, f"{value:,}" if isinstance(value, int) else f"{value:,.3f}")
    stdout.print(kpis)

    total_rows = sum(file.rows for file in summary.files)
    rate = f"{total_rows / summary.seconds:,.0f} rows/s" if summary.seconds > 0 else "rows/s not measured"
    stdout.print(
        f"{summary.patients:,} patients, {total_rows:,} rows in {summary.seconds:.1f} s ({rate}), "
        f"written to {out}",
        markup=False,
    )


# ------------------------------------------------------------------------------------- data pipeline
WorkspaceOption = Annotated[
    Path | None,
    typer.Option(help="Workspace folder (default: $MEDSPACE_WORKSPACE or ./medspace-data)."),
]
EngineOption = Annotated[
    str, typer.Option(help="Compute engine: duckdb (embedded) or spark (local[2] session).")
]
ProfileOption = Annotated[
    str,
    typer.Option(
        "--profile",
        help="De-identification profile: gbt39725-level2, gbt39725-level3, hipaa-safe-harbor or a YAML path.",
    ),
]
KeyFileOption = Annotated[
    Path | None,
    typer.Option(help="File holding the product key in hex (default: $MEDSPACE_PRODUCT_KEY)."),
]


def _workspace(path: Path | None) -> Path:
    from medspace.core import default_workspace

    return path if path is not None else default_workspace()


@contextmanager
def _locked(workspace: Path, command: str) -> Iterator[None]:
    """Hold the workspace's lock while a command writes to it (one command at a time per workspace)."""
    from medspace.core import workspace_lock

    with workspace_lock(workspace, command):
        yield


def _engine(name: str) -> EngineName:
    from medspace.core import ENGINES

    if name not in ENGINES:
        raise ConfigError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    return name


def _console() -> Console:
    return Console(highlight=False, width=max(shutil.get_terminal_size().columns, 110))


def _fail(exc: MedspaceError) -> typer.Exit:
    Console(stderr=True, highlight=False).print(f"error: {exc}", markup=False, soft_wrap=True)
    return typer.Exit(code=exc.exit_code)


@contextmanager
def _progress(description: str, unit: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr for one stage; yields the callback the stage reports to."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit))
    with Progress(*columns, TimeElapsedColumn(), console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=None)

        def report(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield report


SiteOption = Annotated[
    str,
    typer.Option(help="Site mapping: a shipped site's name or a site YAML file."),
]
MaxQuarantineOption = Annotated[
    str | None,
    typer.Option(
        help="Fail when more than this share of rows is quarantined, overall or in any raw table (1%, 0.01)."
    ),
]


def _share(text: str | None) -> float | None:
    """``1%`` or ``0.01`` as a share; None stays None."""
    if text is None:
        return None
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ConfigError(f"--max-quarantine {text!r} is not a share; write e.g. 1% or 0.01") from None
    if not 0 <= value <= 1:
        raise ConfigError(f"--max-quarantine {text!r} must be between 0% and 100%")
    return value


def _ingest(exports: Path, workspace: Path, site: str, max_quarantine: float | None, out: Console) -> None:
    from medspace.core import InputError
    from medspace.sources import stage_site

    with _progress(f"ingest: staging the exports by site {site}", "steps") as progress:
        report = stage_site(site, exports, workspace, progress=progress)
    table = Table(title=f"ingest: raw tables read (site {report.site})")
    for column in ("raw table", "files", "rows read", "staged", "quarantined"):
        table.add_column(column, justify="left" if column == "raw table" else "right")
    for t in report.tables:
        table.add_row(
            f"{t.system}.{t.table}", str(t.files), f"{t.rows_read:,}", f"{t.staged:,}", f"{t.quarantined:,}"
        )
    out.print(table)
    canonical = Table(title=f"ingest: canonical tables ({workspace / 'staging'})")
    for column in ("table", "rows", "from"):
        canonical.add_column(column, justify="right" if column == "rows" else "left")
    for c in report.canonical:
        sources = ", ".join(dict.fromkeys(report.maps[i].source for i in c.maps)) or "(not mapped)"
        canonical.add_row(c.table, f"{c.rows:,}", sources)
    out.print(canonical)
    rules = ", ".join(f"{rule} {n:,}" for rule, n in sorted(report.rules.items())) or "none"
    out.print(f"quarantined by rule: {rules}", markup=False)
    excluded = [m for m in report.maps if m.excluded]
    for m in excluded:
        out.print(f"excluded {m.excluded:,} rows of {m.source} -> {m.to}: {m.excluded_because}", markup=False)
    for problem in report.problems:
        out.print(f"problem: {problem.to_error()}", markup=False)
    failed = report.failed_files
    if failed:
        raise InputError(
            f"{len(failed)} file(s) could not be read at all ({', '.join(f.file for f in failed)}); "
            "see the problems above",
            rule="unreadable_file",
        )
    if max_quarantine is not None:
        over = report.over_quarantine(max_quarantine)
        if over:
            raise InputError(
                f"more than {max_quarantine:.2%} of the rows were quarantined in: {', '.join(over)}; "
                "see staging/quarantine.parquet",
                rule="max_quarantine",
            )


def _link(workspace: Path, engine: EngineName, out: Console, truth: Path | None = None) -> None:
    from medspace.link import link_workspace

    with _progress(f"link: persons and events ({engine})", "steps") as progress:
        report = link_workspace(workspace, engine, progress=progress, truth=truth)
    table = Table(title=f"link: {report.persons:,} persons from {report.records:,} identity records")
    for column in ("table", "linked", "relinked", "recovered", "orphan"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for name, statuses in report.events.items():
        table.add_row(
            name, *(f"{statuses.get(s, 0):,}" for s in ("linked", "relinked", "recovered", "orphan"))
        )
    out.print(table)
    out.print(f"{report.orphans:,} records whose parent is missing from its export (see link/events.parquet)")
    for note in report.notes:
        out.print(f"probabilistic matching: {note}", markup=False)
    changes = report.registry
    if changes is not None:
        kept = "first run" if changes.first_run else f"{changes.persons_kept:,} kept their id"
        out.print(
            f"person registry (run {changes.run_id}): {kept}, {changes.persons_new:,} new, "
            f"{changes.persons_merged:,} merged, {changes.records_split:,} records split off",
            markup=False,
        )
    if report.scores is not None:
        sc = report.scores
        out.print(
            f"against the truth: {sc.records:,} records, {sc.persons:,} persons ({sc.true_persons:,} true); "
            f"precision {sc.precision:.5f}, recall {sc.recall:.5f}; {sc.split_persons:,} split, "
            f"{sc.merged_persons:,} merged, {sc.phantom_persons:,} phantom persons ({sc.phantom_share:.3%})",
            markup=False,
        )
    if report.held_keys or report.held_records or report.review_open:
        out.print(
            f"{report.held_keys:,} keys held back from linking (their records conflict), "
            f"{report.held_records:,} patient records held whole (their own rows are different people); "
            f"{report.review_open:,} review items open: `medspace review list`",
            markup=False,
        )


def _cdm(workspace: Path, engine: EngineName, from_omop: Path | None, out: Console) -> None:
    from medspace.cdm import build_cdm, import_omop

    if from_omop is not None:
        with out.status(f"cdm: importing the OMOP CDM at {from_omop}"):
            imported = import_omop(from_omop, workspace)
        counts = {t.table: t.rows_imported for t in imported.tables}
        built = None
    else:
        with _progress(f"cdm: building OMOP CDM v5.4 ({engine})", "tables") as progress:
            built = build_cdm(workspace, engine, progress=progress)
        counts = built.tables
    table = Table(title=f"cdm: OMOP CDM v5.4 tables ({workspace / 'cdm'})")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in counts.items():
        table.add_row(name, f"{rows:,}")
    out.print(table)
    if built is not None:
        for name, entry in built.staged.items():
            for rule, n in entry["excluded"].items():
                out.print(f"excluded {n:,} {name} rows: {rule}", markup=False)
        units = ", ".join(f"{status} {n:,}" for status, n in built.measurement_units.items())
        out.print(f"measurements by unit: {units} (rules and counts: cdm/manifest.json)", markup=False)


def _quality(workspace: Path, engine: EngineName, overrides: Path | None, out: Console) -> None:
    from medspace.quality import run_quality

    with _progress(
        f"quality: DQD checks, cross-system checks, KPI reconciliation ({engine})", "steps"
    ) as progress:
        result = run_quality(workspace, overrides=overrides, engine=engine, progress=progress)
    table = Table(
        title=f"quality: label (overall {_score(result.label.overall)} of applicable checks passed)"
    )
    for column in ("GB/T 36344 dimension", "score", "passed", "failed", "errors", "not applicable"):
        table.add_column(column, justify="left" if column.startswith("GB/T") else "right")
    for d in result.label.dimensions:
        table.add_row(
            f"{d.name} {d.dimension}",
            _score(d.score),
            str(d.passed),
            str(d.failed),
            str(d.errors),
            str(d.not_applicable),
        )
    out.print(table)
    if result.kpis.period_start is None:
        out.print(f"quality: KPIs not applicable: {result.kpis.reason}", markup=False)
    else:
        kpis = Table(
            title=f"quality: reconciled KPIs ({result.kpis.period_start} to {result.kpis.period_end})"
        )
        kpis.add_column("KPI")
        kpis.add_column("value", justify="right")
        kpis.add_column("sources reconciled")
        for k in result.kpis.kpis.values():
            if k.value is None:
                kpis.add_row(k.name, "n/a", f"not applicable: {k.reason}")
                continue
            sources = ", ".join(f"{s.source} {s.difference:+,.0f}" for s in k.sources) or "-"
            kpis.add_row(k.name, f"{k.value:,.4g}" if k.value < 100 else f"{k.value:,.0f}", sources)
        out.print(kpis)
    out.print(f"report: {result.folder / 'report.html'}", markup=False)


def _score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"


@app.command()
def ingest(
    exports: Annotated[
        Path, typer.Argument(help="Folder of the hospital's exports, one sub-folder per system.")
    ],
    workspace: WorkspaceOption = None,
    site: SiteOption = "synthetic-hospital",
    max_quarantine: MaxQuarantineOption = None,
) -> None:
    """Read a site's exports by its site mapping into the canonical tables; quarantine bad rows."""
    try:
        with _locked(ws := _workspace(workspace), "medspace ingest"):
            _ingest(exports, ws, site, _share(max_quarantine), _console())
    except MedspaceError as exc:
        raise _fail(exc) from None


site_app = typer.Typer(help="Site mappings: check one against a site's real files.", no_args_is_help=True)
app.add_typer(site_app, name="site")


@site_app.command("check")
def site_check(
    site: Annotated[str, typer.Argument(help="A shipped site's name or a site YAML file.")],
    exports: Annotated[Path, typer.Argument(help="The site's export folder.")],
) -> None:
    """Check a site mapping against the export folder (headers only): what maps, what is missing or empty."""
    from medspace.sources import check_site

    out = _console()
    try:
        check = check_site(site, exports)
    except MedspaceError as exc:
        raise _fail(exc) from None
    raw = Table(title=f"site {check.site}: raw tables in {exports}")
    for column in ("raw table", "files", "missing columns", "unused columns", "fields no map reads"):
        raw.add_column(column, overflow="fold")
    for t in check.raw_tables:
        files = ", ".join(f.file for f in t.found) or f"NONE match {t.files}"
        unused = sorted({c for f in t.found for c in f.unused})
        raw.add_row(
            f"{t.system}.{t.table}" + ("" if t.mapped else " (not mapped)"),
            files,
            ", ".join(t.missing_columns) or "-",
            ", ".join(unused) or "-",
            ", ".join(t.unmapped_fields) or "-",
        )
    out.print(raw)
    model = Table(title="canonical tables")
    for column in ("table", "fed by", "unmapped columns", "if empty"):
        model.add_column(column, overflow="fold")
    for m in check.model_tables:
        model.add_row(
            m.table,
            ", ".join(m.maps) or "-",
            ", ".join(m.unmapped_columns) or "-",
            ("EMPTY: " + (m.disables or "")) if m.empty else "",
        )
    out.print(model)
    errors = check.errors
    for error in errors:
        Console(stderr=True, highlight=False).print(f"error: {error}", markup=False, soft_wrap=True)
    if errors:
        raise typer.Exit(code=1)
    out.print("the site mapping fits the files", markup=False)


@app.command()
def link(
    workspace: WorkspaceOption = None,
    engine: EngineOption = "duckdb",
    truth: Annotated[
        Path | None,
        typer.Option(help="Score persons against a labelled truth of raw rows (file, row, person_id)."),
    ] = None,
) -> None:
    """Link each person across systems and every record to its visit; report orphans."""
    try:
        with _locked(ws := _workspace(workspace), "medspace link"):
            _link(ws, _engine(engine), _console(), truth)
    except MedspaceError as exc:
        raise _fail(exc) from None


review_app = typer.Typer(
    help="The review queue: key conflicts held back from linking, and the decisions on them.",
    no_args_is_help=True,
)
app.add_typer(review_app, name="review")


@review_app.command("list")
def review_list(
    workspace: WorkspaceOption = None,
    all_items: Annotated[
        bool, typer.Option("--all", help="Also items the last link run no longer found.")
    ] = False,
) -> None:
    """List the review queue with each item's evidence and the decision in force."""
    from medspace.link import review_queue

    out = _console()
    try:
        queue = review_queue(_workspace(workspace), include_gone=all_items).to_pylist()
    except MedspaceError as exc:
        raise _fail(exc) from None
    table = Table(title=f"review queue: {len(queue):,} items")
    for column in ("item", "rule", "records", "decision"):
        table.add_column(column, overflow="fold")
    for item in queue:
        records = ", ".join(r for r in (item["record_a"], item["record_b"]) if r)
        decision = item["decision"] or "open"
        if item["decision"]:
            decision += f" ({item['decided_by']}, {item['decided_at']})"
        if not item["present"]:
            decision += "; gone from the last run"
        table.add_row(item["item_id"], item["rule"], records, decision)
    out.print(table)


@review_app.command("decide")
def review_decide(
    item: Annotated[str, typer.Argument(help="The item id, as `medspace review list` shows it.")],
    decision: Annotated[str, typer.Argument(help="link (one person) or separate (not one person).")],
    workspace: WorkspaceOption = None,
    reviewer: Annotated[str | None, typer.Option(help="Who decides (default: the login name).")] = None,
    note: Annotated[str, typer.Option(help="Why, for the audit.")] = "",
) -> None:
    """Decide a review item; the next `medspace link` applies it."""
    from medspace.link import decide_review

    try:
        with _locked(ws := _workspace(workspace), "medspace review decide"):
            entry = decide_review(ws, item, decision, reviewer=reviewer, note=note)
    except MedspaceError as exc:
        raise _fail(exc) from None
    _console().print(
        f"{entry.item_id}: {entry.decision} by {entry.reviewer} at {entry.at}; "
        "run `medspace link` (or `medspace run`) to apply it",
        markup=False,
    )


@app.command()
def cdm(
    workspace: WorkspaceOption = None,
    engine: EngineOption = "duckdb",
    from_omop: Annotated[
        Path | None,
        typer.Option(help="Import an existing OMOP CDM (CSV folder, zip or DuckDB file) instead."),
    ] = None,
) -> None:
    """Build the OMOP CDM v5.4 tables from the linked data (or import an existing OMOP CDM)."""
    try:
        with _locked(ws := _workspace(workspace), "medspace cdm"):
            _cdm(ws, _engine(engine), from_omop, _console())
    except MedspaceError as exc:
        raise _fail(exc) from None


@app.command()
def quality(
    workspace: WorkspaceOption = None,
    engine: EngineOption = "duckdb",
    overrides: Annotated[
        Path | None, typer.Option(help="YAML file adding or overriding DQD checks and thresholds.")
    ] = None,
) -> None:
    """Check the data (DQD and cross-system), reconcile the KPIs, write the quality label and HTML report."""
    try:
        with _locked(ws := _workspace(workspace), "medspace quality"):
            _quality(ws, _engine(engine), overrides, _console())
    except MedspaceError as exc:
        raise _fail(exc) from None


@app.command()
def run(
    exports: Annotated[
        Path, typer.Argument(help="Folder of the hospital's exports, one sub-folder per system.")
    ],
    workspace: WorkspaceOption = None,
    engine: EngineOption = "duckdb",
    profile: ProfileOption = "gbt39725-level3",
    key_file: KeyFileOption = None,
    site: SiteOption = "synthetic-hospital",
    max_quarantine: MaxQuarantineOption = None,
) -> None:
    """Run ingest, link, cdm, quality and deid in order."""
    out = _console()
    try:
        ws = _workspace(workspace)
        chosen = _engine(engine)
        with _locked(ws, "medspace run"):
            _ingest(exports, ws, site, _share(max_quarantine), out)
            _link(ws, chosen, out)
            _cdm(ws, chosen, None, out)
            _quality(ws, chosen, None, out)
            _deid(None, ws, profile, key_file, None, None, out)
    except MedspaceError as exc:
        raise _fail(exc) from None


def _deid_plan(source: Path | None, workspace: Path, profile_name: str, out: Console) -> None:
    from medspace.privacy import load_profile, plan_dataset

    profile = load_profile(profile_name)
    plans = plan_dataset(source, workspace, profile)
    table = Table(title=f"deid --plan: what profile {profile.name} would do (nothing is written)")
    table.add_column("column", overflow="fold")
    for column in ("role", "kind", "treatment", "hierarchy", "decided by"):
        table.add_column(column, overflow="fold")
    for p in plans:
        if p.treatment.action == "keep" and p.role.value == "insensitive":
            continue
        table.add_row(
            f"{p.table}.{p.column}" if p.table else p.column,
            p.role.value,
            p.kind.value,
            p.treatment.action,
            p.hierarchy.kind if p.hierarchy is not None else "",
            p.source,
        )
    out.print(table)
    kept = sum(1 for p in plans if p.treatment.action == "keep" and p.role.value == "insensitive")
    out.print(
        f"{kept} insensitive columns kept as they are. Confirm or change roles in a profile's `columns`."
    )


def _deid(
    source: Path | None,
    workspace: Path,
    profile_name: str,
    key_file: Path | None,
    out_folder: Path | None,
    person_column: str | None,
    out: Console,
) -> None:
    from medspace.privacy import deidentify_file, deidentify_workspace, load_profile, product_key

    profile = load_profile(profile_name)
    key = product_key(profile, key_file)
    with _progress(f"deid: de-identifying by profile {profile.name}", "steps") as progress:
        if source is None:
            release = deidentify_workspace(workspace, profile, key, out_folder, progress=progress)
        else:
            folder = out_folder or workspace / "deid" / f"{profile.name}-{source.stem}"
            release = deidentify_file(
                source, profile, key, folder, person_column=person_column, progress=progress
            )
    r = release.result.report
    title = (
        f"deid: {r.rows_released:,} of {r.rows_in:,} {r.unit}s released, {r.rows_suppressed:,} suppressed "
        f"(profile {r.profile}, key {r.key_fingerprint})"
    )
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    rb, ra = r.risk_before, r.risk_after
    for label, before, after in (
        ("prosecutor risk, highest", rb.prosecutor_highest, ra.prosecutor_highest),
        ("prosecutor risk, average", rb.prosecutor_average, ra.prosecutor_average),
        (f"records at risk (> {ra.risk_threshold:.0%})", rb.records_at_risk, ra.records_at_risk),
        ("journalist risk, highest", rb.journalist_highest, ra.journalist_highest),
        ("marketer risk", rb.marketer, ra.marketer),
    ):
        table.add_row(label, f"{before:.2%}", f"{after:.2%}")
    table.add_row("k (smallest class)", "", str(r.measures.k))
    for column, value in r.measures.distinct_l.items():
        table.add_row(
            f"l of {column} (distinct / entropy)", "", f"{value} / {r.measures.entropy_l[column]:.2f}"
        )
        table.add_row(f"t of {column}", "", f"{r.measures.t[column]:.3f}")
    table.add_row("information loss", "", f"{r.utility.loss:.1%}")
    out.print(table)
    for m in r.models:
        out.print(f"model {m.model} {m.parameters}: {'met' if m.satisfied else 'NOT met'}", markup=False)
    levels = ", ".join(f"{q.column} {q.level}/{q.height - 1}" for q in r.quasi_identifiers) or "none"
    out.print(f"levels: {levels}", markup=False)
    if r.text_identifiers:
        found = ", ".join(f"{k} {n:,}" for k, n in r.text_identifiers.items())
        out.print(f"free text: {r.texts_scrubbed:,} texts, replaced {found}", markup=False)
    out.print(f"release: {release.folder} (report: deid_report.html)", markup=False)


@app.command()
def deid(
    source: Annotated[
        Path | None,
        typer.Argument(help="A Parquet or CSV table; without it, the workspace's OMOP CDM is de-identified."),
    ] = None,
    workspace: WorkspaceOption = None,
    profile: ProfileOption = "gbt39725-level3",
    key_file: KeyFileOption = None,
    out: Annotated[Path | None, typer.Option(help="Release folder (default: <workspace>/deid/...).")] = None,
    person_column: Annotated[
        str | None, typer.Option(help="Column naming each row's patient, for per-person date shifts.")
    ] = None,
    plan: Annotated[
        bool, typer.Option("--plan", help="Only show each column's proposed role and treatment.")
    ] = False,
) -> None:
    """De-identify the CDM (or one table) by a profile: pseudonyms, date shifts, generalisation, free text."""
    try:
        if plan:
            _deid_plan(source, _workspace(workspace), profile, _console())
            return
        with _locked(ws := _workspace(workspace), "medspace deid"):
            _deid(source, ws, profile, key_file, out, person_column, _console())
    except MedspaceError as exc:
        raise _fail(exc) from None


@app.command()
def status(
    workspace: WorkspaceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """Show each stage's output: its run, version, when it was built, and whether it is stale and why."""
    import json

    from medspace.core import workspace_status

    ws = _workspace(workspace)
    rows = workspace_status(ws)
    out = _console()
    if as_json:
        typer.echo(json.dumps({"workspace": str(ws), "stages": [r.to_json() for r in rows]}, indent=2))
        return
    table = Table(title=f"status: {ws}")
    for column in ("stage", "present", "run_id", "built_at", "version", "state"):
        table.add_column(column, overflow="fold")
    for r in rows:
        state = "-" if not r.present else f"STALE: {r.reason}" if r.stale else "current"
        table.add_row(
            r.stage,
            "yes" if r.present else "no",
            r.run_id or "-",
            r.built_at or "-",
            r.medspace_version or "-",
            state,
        )
    out.print(table)


# ------------------------------------------------------------------------------------- vocabularies
vocab_app = typer.Typer(
    help="Load OHDSI's standardised vocabularies (an Athena download) and map source codes through them.",
    no_args_is_help=True,
)
app.add_typer(vocab_app, name="vocab")


@vocab_app.command("load")
def vocab_load(
    source: Annotated[
        Path, typer.Argument(help="Athena download or OMOP export: a folder or zip holding CONCEPT.csv, ...")
    ],
    workspace: WorkspaceOption = None,
    usagi: Annotated[
        Path | None,
        typer.Option(
            help="The site's mappings: Usagi's export or a SOURCE_TO_CONCEPT_MAP CSV (wins over Athena)."
        ),
    ] = None,
    usagi_vocabulary: Annotated[
        str | None, typer.Option(help="vocabulary_id of the codes in a Usagi export (e.g. ICD10CM).")
    ] = None,
) -> None:
    """Load a vocabulary into <workspace>/vocab/ and print the rows of each table."""
    from medspace.cdm import load_vocabulary

    out = _console()
    try:
        ws = _workspace(workspace)
        with (
            _locked(ws, "medspace vocab load"),
            out.status(f"vocab: loading the vocabulary at {source}"),
        ):
            report = load_vocabulary(source, ws, usagi=usagi, usagi_vocabulary_id=usagi_vocabulary)
    except MedspaceError as exc:
        raise _fail(exc) from None
    table = Table(title=f"vocab: OMOP CDM v5.4 vocabulary tables ({report.folder})")
    for column in ("table", "file", "rows read", "loaded", "quarantined"):
        table.add_column(column, justify="left" if column in ("table", "file") else "right")
    for t in report.tables:
        table.add_row(
            t.table, t.file or "(absent)", f"{t.rows_read:,}", f"{t.rows_loaded:,}", f"{t.rows_quarantined:,}"
        )
    o = report.overlay
    if o is not None:
        excluded = sum(o.rows_excluded.values())
        table.add_row(
            "site mappings", o.file, f"{o.rows_read:,}", f"{o.rows_loaded:,}", f"{o.rows_quarantined:,}"
        )
        reasons = ", ".join(f"{rule} {n:,}" for rule, n in o.rows_excluded.items()) or "none"
        out.print(table)
        out.print(f"site mappings: {o.codes:,} codes, {excluded:,} rows excluded ({reasons})", markup=False)
    else:
        out.print(table)
    out.print(f"{report.concepts:,} concepts; quarantine: {report.folder}/quarantine.parquet", markup=False)


@vocab_app.command("map")
def vocab_map(
    vocabulary_id: Annotated[
        str, typer.Argument(help="The code's vocabulary_id, e.g. ICD10CM, LOINC, SNOMED.")
    ],
    code: Annotated[str, typer.Argument(help="The source code, e.g. E11.9 or E119.")],
    workspace: WorkspaceOption = None,
) -> None:
    """Look up one source code: its source concept and the standard concepts it maps to."""
    from medspace.cdm import Vocabulary

    out = _console()
    try:
        with Vocabulary.open(_workspace(workspace)) as vocabulary:
            mapped = vocabulary.lookup(vocabulary_id, code)
    except MedspaceError as exc:
        raise _fail(exc) from None
    [row] = mapped.rows.to_pylist()
    match = row["source_match"] or "no such code"
    out.print(f"{vocabulary_id} {code}: source concept {row['source_concept_id']} ({match})", markup=False)
    if mapped.unknown_vocabularies:
        out.print(
            f"vocabulary {vocabulary_id!r} is not in the loaded vocabulary (check its name)", markup=False
        )
    if not mapped.targets.num_rows:
        out.print("standard concept 0: no valid Maps to target", markup=False)
        return
    table = Table(title=f"standard concepts ({row['mapped_by']} mapping)")
    for column in ("concept_id", "domain", "vocabulary", "chosen"):
        table.add_column(column)
    for t in mapped.targets.to_pylist():
        table.add_row(
            str(t["target_concept_id"]),
            t["target_domain_id"] or "",
            t["target_vocabulary_id"] or "",
            "yes" if t["target_rank"] == 1 else "",
        )
    out.print(table)


if __name__ == "__main__":
    app()

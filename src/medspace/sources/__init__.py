"""The sources stage: read a site's raw exports, by its site mapping, into the canonical hospital model.

The canonical hospital model (`load_model`) is fixed and versioned: the pre-linkage facts every hospital has
(patients as each system knows them, encounters, diagnoses, procedures, lab orders and results, imaging,
medication, charges, settlements, notes, deaths). A site mapping (`load_site`: YAML, shipped under
``data/sites/`` or given as a file) names the site's systems and raw tables and maps them onto the model.
`check_site` compares a mapping with the real files before anything runs; `stage_site` writes
``<workspace>/staging/``: one Parquet file per canonical table with lineage, a quarantine table holding every
row that was not staged and why, ``site.json`` (read back by `read_site`) and a manifest of counts. Nothing
is dropped silently.

Example:
    >>> site = load_site(DEFAULT_SITE)
    >>> site.patient_index, sorted({m.to for m in site.maps})[:3]
    ('his', ['charge', 'death', 'diagnosis'])
"""

from medspace.sources._check import ColumnCheck, ModelTableCheck, RawTableCheck, SiteCheck, check_site
from medspace.sources._convert import ARROW_TYPES
from medspace.sources._maps import QUARANTINE
from medspace.sources._model import (
    LINEAGE,
    HospitalModel,
    ModelColumn,
    ModelTable,
    load_model,
    model_markdown,
)
from medspace.sources._report import (
    CanonicalReport,
    FileReport,
    MapReport,
    Problem,
    StagingReport,
    TableReport,
)
from medspace.sources._site import (
    DEFAULT_SITE,
    CodeSystem,
    Identifiers,
    Lookup,
    MapSpec,
    Site,
    SiteDeclarations,
    SystemInfo,
    SystemSpec,
    load_site,
    parse_site,
    read_site,
)
from medspace.sources._spec import ColumnSpec, CsvFormat, NdjsonFormat, TableSpec, XlsxFormat
from medspace.sources._stage import stage_site

__all__ = [
    "ARROW_TYPES",
    "DEFAULT_SITE",
    "LINEAGE",
    "QUARANTINE",
    "CanonicalReport",
    "CodeSystem",
    "ColumnCheck",
    "ColumnSpec",
    "CsvFormat",
    "FileReport",
    "HospitalModel",
    "Identifiers",
    "Lookup",
    "MapReport",
    "MapSpec",
    "ModelColumn",
    "ModelTable",
    "ModelTableCheck",
    "NdjsonFormat",
    "Problem",
    "RawTableCheck",
    "Site",
    "SiteCheck",
    "SiteDeclarations",
    "StagingReport",
    "SystemInfo",
    "SystemSpec",
    "TableReport",
    "TableSpec",
    "XlsxFormat",
    "check_site",
    "load_model",
    "load_site",
    "model_markdown",
    "parse_site",
    "read_site",
    "stage_site",
]

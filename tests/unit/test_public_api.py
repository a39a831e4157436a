"""Snapshot of every stage's public API (STYLE.md §2): changing it is a deliberate edit of this file."""

from __future__ import annotations

import importlib
import inspect

import pytest

API = {
    "medspace.core": [
        "CATALOG",
        "refresh_catalog",
        "ConfigError",
        "ENGINES",
        "EngineName",
        "InputError",
        "MedspaceError",
        "RESIDENT_ID_WEIGHTS",
        "ResidentIdCheck",
        "ResidentIdFailure",
        "SpecError",
        "Workspace",
        "check_resident_id",
        "connect",
        "default_workspace",
        "make_resident_id",
        "materialise",
        "region_codes",
        "replace_folder",
        "resident_id_check_char",
        "resident_id_sex",
        "small_table",
        "spark_session",
        "write_parquet",
    ],
    "medspace.synth": [
        "Catalogue",
        "DefectRates",
        "ExportFile",
        "HospitalConfig",
        "HospitalSummary",
        "generate_hospital",
        "load_catalogue",
    ],
    "medspace.sources": [
        "ARROW_TYPES",
        "CODE_SYSTEMS",
        "ColumnSpec",
        "CsvFormat",
        "FileReport",
        "LINEAGE",
        "NdjsonFormat",
        "Problem",
        "QUARANTINE",
        "SourceSpec",
        "StagingReport",
        "TableReport",
        "TableSpec",
        "XlsxFormat",
        "load_spec",
        "load_specs",
        "parse_spec",
        "stage_exports",
    ],
    "medspace.link": [
        "BlockingRule",
        "Comparison",
        "ComparisonParameters",
        "DateComparison",
        "EditDistanceComparison",
        "ExactComparison",
        "JaroWinklerComparison",
        "LinkReport",
        "MatchSpec",
        "PersonMatches",
        "TrainingSpec",
        "link_workspace",
        "load_match_spec",
        "match_records",
    ],
    "medspace.cdm": [
        "CDM_VERSION",
        "CdmBuildReport",
        "CdmField",
        "CdmSchema",
        "CdmTable",
        "CdmType",
        "Department",
        "DiagnosisCode",
        "DischargeMode",
        "ImportReport",
        "LabTestMapping",
        "Mappings",
        "ProcedureCode",
        "QUARANTINE_SCHEMA",
        "SexCode",
        "TableImport",
        "UnitConversion",
        "VisitType",
        "build_cdm",
        "cdm_schema",
        "duckdb_ddl",
        "import_omop",
        "load_mappings",
        "normalise_unit",
        "to_canonical",
        "to_canonical_arrow",
        "to_canonical_ibis",
    ],
}

API["medspace.quality"] = [
    "CheckResult",
    "CheckSelector",
    "CheckStatus",
    "CrossSystemResult",
    "CrossSystemResults",
    "DimensionScore",
    "DqdOverrides",
    "Kpi",
    "KpiReconciliation",
    "LinkRate",
    "NotNullCheck",
    "PlausibleRangeCheck",
    "QualityCheck",
    "QualityLabel",
    "QualityResults",
    "QualityRun",
    "ReferenceRangeProfile",
    "SourceCount",
    "ThresholdOverride",
    "UnitProfile",
    "cross_system_checks",
    "load_overrides",
    "quality_label",
    "reconcile_kpis",
    "run_checks",
    "run_quality",
    "write_cross_system",
    "write_dqd_json",
]

SIGNATURES = {
    "medspace.synth.generate_hospital": "(config, out, progress=None)",
    "medspace.sources.stage_exports": "(exports, workspace, specs=None, *, workers=None, progress=None)",
    "medspace.link.link_workspace": "(workspace, engine='duckdb', *, progress=None)",
    "medspace.link.match_records": "(records, spec='person_cn', *, connection=None)",
    "medspace.cdm.build_cdm": "(workspace, engine='duckdb', *, progress=None)",
    "medspace.cdm.import_omop": "(source, workspace)",
    "medspace.quality.run_quality": "(workspace, *, overrides=None, engine='duckdb')",
    "medspace.quality.run_checks": "(workspace, *, overrides=None, engine='duckdb')",
}


@pytest.mark.parametrize("module", sorted(API))
def test_public_names(module: str) -> None:
    assert sorted(importlib.import_module(module).__all__) == sorted(API[module])


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_entry_point_signatures(name: str) -> None:
    module, _, function = name.rpartition(".")
    signature = inspect.signature(getattr(importlib.import_module(module), function))
    plain = signature.replace(
        parameters=[p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()],
        return_annotation=inspect.Signature.empty,
    )
    assert str(plain) == SIGNATURES[name]

"""The harmonised model: OMOP CDM v5.4 schema, import of existing OMOP databases, mappings and units.

The schema is generated from OHDSI's specification CSVs shipped in ``data/omop-cdm-5.4/``; the mappings from
the hospital's Chinese code systems and local lab codes to OMOP concepts are CSV data files in
``data/mappings/``, validated when they load. Other stages import from here, never from private modules.
"""

from medspace.cdm._duckdb import QUARANTINE_SCHEMA, duckdb_ddl
from medspace.cdm._from_hospital import CdmBuildReport, build_cdm
from medspace.cdm._import import ImportReport, TableImport, import_omop
from medspace.cdm._mappings import (
    Department,
    DiagnosisCode,
    DischargeMode,
    LabTestMapping,
    Mappings,
    ProcedureCode,
    SexCode,
    UnitConversion,
    VisitType,
    load_mappings,
)
from medspace.cdm._schema import CDM_VERSION, CdmField, CdmSchema, CdmTable, CdmType, cdm_schema
from medspace.cdm._units import normalise_unit, to_canonical, to_canonical_arrow, to_canonical_ibis
from medspace.cdm._vocabulary import (
    OverlayLoad,
    SourceCodeMapping,
    Vocabulary,
    VocabularyReport,
    VocabularyTable,
    load_vocabulary,
    map_source_codes,
)

__all__ = [
    "CDM_VERSION",
    "QUARANTINE_SCHEMA",
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
    "OverlayLoad",
    "ProcedureCode",
    "SexCode",
    "SourceCodeMapping",
    "TableImport",
    "UnitConversion",
    "VisitType",
    "Vocabulary",
    "VocabularyReport",
    "VocabularyTable",
    "build_cdm",
    "cdm_schema",
    "duckdb_ddl",
    "import_omop",
    "load_mappings",
    "load_vocabulary",
    "map_source_codes",
    "normalise_unit",
    "to_canonical",
    "to_canonical_arrow",
    "to_canonical_ibis",
]

"""Shared foundations every medspace stage builds on: errors, identifier checks and the workspace.

Stages import from here (``from medspace.core import InputError``), never from the private modules.
"""

from medspace.core._engine import (
    ENGINES,
    EngineName,
    connect,
    forget,
    materialise,
    small_table,
    spark_session,
    write_parquet,
)
from medspace.core._identifiers import (
    RESIDENT_ID_WEIGHTS,
    ResidentIdCheck,
    ResidentIdFailure,
    check_resident_id,
    make_resident_id,
    region_codes,
    resident_id_check_char,
    resident_id_sex,
)
from medspace.core._workspace import CATALOG, Workspace, default_workspace, refresh_catalog, replace_folder
from medspace.core.errors import ConfigError, InputError, MedspaceError, SpecError

__all__ = [
    "CATALOG",
    "ENGINES",
    "RESIDENT_ID_WEIGHTS",
    "ConfigError",
    "EngineName",
    "InputError",
    "MedspaceError",
    "ResidentIdCheck",
    "ResidentIdFailure",
    "SpecError",
    "Workspace",
    "check_resident_id",
    "connect",
    "default_workspace",
    "forget",
    "make_resident_id",
    "materialise",
    "refresh_catalog",
    "region_codes",
    "replace_folder",
    "resident_id_check_char",
    "resident_id_sex",
    "small_table",
    "spark_session",
    "write_parquet",
]

"""De-identification: pseudonyms, generalisation, privacy models, re-identification risk, text scrubbing.

Other stages, the CLI and the API import from here, never from the private modules.
"""

from medspace.privacy._anonymise import Anonymisation, NoSolutionError, PrivacyMeasures, Utility, anonymise
from medspace.privacy._hierarchy import (
    NULL_LEAF,
    SUPPRESSED,
    ArxCsvSpec,
    BandsSpec,
    DateSpec,
    Hierarchy,
    HierarchySpec,
    MaskSpec,
    OccupationSpec,
    RegionSpec,
    SuppressSpec,
    build_hierarchy,
    hierarchy_for,
    leaf_strings,
)
from medspace.privacy._keys import ProductKey
from medspace.privacy._models import (
    DistinctLDiversity,
    EntropyLDiversity,
    KAnonymity,
    PrivacyModel,
    RecursiveCLDiversity,
    TCloseness,
)
from medspace.privacy._risk import DEFAULT_RISK_THRESHOLD, ReidentificationRisk, reidentification_risk

__all__ = [
    "DEFAULT_RISK_THRESHOLD",
    "NULL_LEAF",
    "SUPPRESSED",
    "Anonymisation",
    "ArxCsvSpec",
    "BandsSpec",
    "DateSpec",
    "DistinctLDiversity",
    "EntropyLDiversity",
    "Hierarchy",
    "HierarchySpec",
    "KAnonymity",
    "MaskSpec",
    "NoSolutionError",
    "OccupationSpec",
    "PrivacyMeasures",
    "PrivacyModel",
    "ProductKey",
    "RecursiveCLDiversity",
    "RegionSpec",
    "ReidentificationRisk",
    "SuppressSpec",
    "TCloseness",
    "Utility",
    "anonymise",
    "build_hierarchy",
    "hierarchy_for",
    "leaf_strings",
    "reidentification_risk",
]

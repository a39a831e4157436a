"""The synthetic hospital: one hospital's system exports plus a separate ground truth.

`generate_hospital` writes, for a seed, a hospital's exports in each vendor's own formats and with the
inconsistencies real exports have, and beside them ``truth/``: the true person behind every row, the true
links, every injected defect and the true KPIs. Two vendor profiles (``HospitalConfig.profile``) export the
same simulated people and encounters: ``tertiary`` (HIS, LIS, EMR, RIS/PACS, the anaesthesia/surgery system
and the insurance settlement lists) and ``integrated`` (one integrated HIS with the lab, and a regional
platform's FHIR R4 Bulk Data NDJSON). No pipeline stage imports this package; only tests, benchmarks and the
CLI do.
"""

from medspace.synth._catalogue import Catalogue, load_catalogue
from medspace.synth._config import DefectRates, HospitalConfig, IntegratedRates, Profile
from medspace.synth._generate import ExportFile, HospitalSummary, generate_hospital

__all__ = [
    "Catalogue",
    "DefectRates",
    "ExportFile",
    "HospitalConfig",
    "HospitalSummary",
    "IntegratedRates",
    "Profile",
    "generate_hospital",
    "load_catalogue",
]

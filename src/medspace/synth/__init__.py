"""The synthetic hospital: one tertiary hospital's system exports plus a separate ground truth.

`generate_hospital` writes, for a seed, the exports of HIS, LIS, EMR, RIS/PACS, the anaesthesia/surgery
system and the insurance settlement lists, in each vendor's own formats and with the inconsistencies real
exports have, and beside them ``truth/``: the true person behind every row, the true links, every injected
defect and the true KPIs. No pipeline stage imports this package; only tests, benchmarks and the CLI do.
"""

from medspace.synth._catalogue import Catalogue, load_catalogue
from medspace.synth._config import DefectRates, HospitalConfig
from medspace.synth._generate import ExportFile, HospitalSummary, generate_hospital

__all__ = [
    "Catalogue",
    "DefectRates",
    "ExportFile",
    "HospitalConfig",
    "HospitalSummary",
    "generate_hospital",
    "load_catalogue",
]

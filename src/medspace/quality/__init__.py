"""Quality: how good the data is, stated so an exchange can list it and a hospital can act on it.

- DataQualityDashboard (DQD) v5.4 checks over the CDM, instantiated from DQD's control tables shipped in
  ``data/dqd-5.4/`` (Apache-2.0, see the NOTICE there), with DQD's statuses and results JSON; users disable
  checks, change thresholds and add checks in a YAML overrides file.
- Cross-system checks DQD lacks, over the canonical hospital model: the same fact in every system that holds
  it, orphan and link rates, units and ranges; a check whose canonical tables are empty is not applicable.
- KPI reconciliation: each national KPI counted from every system that can count it, one reconciled value,
  and per source a record-level ledger: every record matched, explained by a named rule, or unexplained; a
  source's consistency check fails when its unexplained records exceed the configured tolerance.
- The mapped share (concept_id != 0) of rows and source codes per CDM domain, with the unmapped codes.
- The quality label (GB/T 36344 dimensions, EHDS Article 78 elements) and a self-contained HTML report.

Other stages import from here, never from the private modules.
"""

from medspace.quality._cross_system import (
    CrossSystemResult,
    CrossSystemResults,
    LinkRate,
    ReferenceRangeProfile,
    UnitProfile,
    cross_system_checks,
    write_cross_system,
)
from medspace.quality._dqd_overrides import (
    CheckSelector,
    DqdOverrides,
    NotNullCheck,
    PlausibleRangeCheck,
    ThresholdOverride,
    load_overrides,
)
from medspace.quality._dqd_results import CheckResult, CheckStatus, QualityResults, write_dqd_json
from medspace.quality._dqd_run import run_checks
from medspace.quality._kpi_definitions import KpiTolerance
from medspace.quality._kpis import Kpi, KpiReconciliation, Reason, SourceCount, reconcile_kpis
from medspace.quality._label import DimensionScore, QualityCheck, QualityLabel, quality_label
from medspace.quality._mapping_coverage import DomainCoverage, UnmappedCode, mapping_coverage
from medspace.quality._run import QualityRun, run_quality

__all__ = [
    "CheckResult",
    "CheckSelector",
    "CheckStatus",
    "CrossSystemResult",
    "CrossSystemResults",
    "DimensionScore",
    "DomainCoverage",
    "DqdOverrides",
    "Kpi",
    "KpiReconciliation",
    "KpiTolerance",
    "LinkRate",
    "NotNullCheck",
    "PlausibleRangeCheck",
    "QualityCheck",
    "QualityLabel",
    "QualityResults",
    "QualityRun",
    "Reason",
    "ReferenceRangeProfile",
    "SourceCount",
    "ThresholdOverride",
    "UnitProfile",
    "UnmappedCode",
    "cross_system_checks",
    "load_overrides",
    "mapping_coverage",
    "quality_label",
    "reconcile_kpis",
    "run_checks",
    "run_quality",
    "write_cross_system",
    "write_dqd_json",
]

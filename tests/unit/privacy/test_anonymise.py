"""Anonymising a table: the figures it reports are measured again by pycanon and by brute force."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pycanon import anonymity

from medspace.core import ConfigError, InputError
from medspace.privacy import (
    BandsSpec,
    DateSpec,
    DistinctLDiversity,
    EntropyLDiversity,
    KAnonymity,
    NoSolutionError,
    RegionSpec,
    SuppressSpec,
    TCloseness,
    anonymise,
    hierarchy_for,
    reidentification_risk,
)
from privacy_reference import generalise, risks

QI = ["age", "sex", "region", "admitted"]


@pytest.fixture(scope="module")
def admissions() -> pa.Table:
    rng = np.random.default_rng(7)
    n = 3000
    regions = ["310101", "310104", "310105", "320102", "320106", "330102", "330106", "340102"]
    start = dt.date(2024, 1, 1).toordinal()
    return pa.table(
        {
            "age": rng.integers(18, 95, n),
            "sex": rng.choice(["M", "F"], n),
            "region": rng.choice(regions, n),
            "admitted": [dt.date.fromordinal(start + int(d)) for d in rng.integers(0, 366, n)],
            "diagnosis": rng.choice(
                ["E11", "I10", "J18", "C34", "I21", "N18"], n, p=[0.3, 0.3, 0.2, 0.1, 0.06, 0.04]
            ),
            "stay_days": rng.integers(1, 30, n),
        }
    )


def _hierarchies(table: pa.Table) -> list:
    specs = [
        BandsSpec(widths=(5, 10, 20)),
        SuppressSpec(),
        RegionSpec(),
        DateSpec(levels=("month", "quarter", "year")),
    ]
    return [hierarchy_for(c, table[c], s)[0] for c, s in zip(QI, specs, strict=True)]


@pytest.mark.parametrize(
    "models",
    [
        [KAnonymity(k=5)],
        [KAnonymity(k=10), DistinctLDiversity(l=3)],
        [KAnonymity(k=5), EntropyLDiversity(l=2.5)],
        [KAnonymity(k=5), TCloseness(t=0.3)],
    ],
    ids=["k", "k+distinct-l", "k+entropy-l", "k+t"],
)
def test_pycanon_measures_what_we_report(admissions: pa.Table, models: list) -> None:
    result = anonymise(
        admissions,
        _hierarchies(admissions),
        models,
        sensitive=["diagnosis", "stay_days"],
        suppression_limit=0.05,
    )
    df = pd.DataFrame(result.table.to_pylist())
    assert anonymity.k_anonymity(df, QI) == result.measures.k
    for s in ["diagnosis", "stay_days"]:
        assert anonymity.l_diversity(df, QI, [s]) == result.measures.distinct_l[s]
        # pycanon truncates exp(entropy) to an integer.
        assert anonymity.entropy_l_diversity(df, QI, [s]) == math.floor(result.measures.entropy_l[s] + 1e-9)
        assert anonymity.t_closeness(df, QI, [s]) == pytest.approx(result.measures.t[s])
    for m in models:
        if isinstance(m, KAnonymity):
            assert result.measures.k >= m.k
        if isinstance(m, DistinctLDiversity):
            assert min(result.measures.distinct_l.values()) >= m.l
        if isinstance(m, EntropyLDiversity):
            assert min(result.measures.entropy_l.values()) >= m.l
        if isinstance(m, TCloseness):
            assert max(result.measures.t.values()) <= m.t
    assert result.rows_suppressed <= 0.05 * admissions.num_rows
    assert result.table.num_rows == admissions.num_rows - result.rows_suppressed
    assert result.nodes_checked < result.lattice_size  # the bound pruned the lattice


def test_risks_equal_a_record_by_record_computation(admissions: pa.Table) -> None:
    hierarchies = _hierarchies(admissions)
    sample = admissions.slice(0, 1200)
    result = anonymise(sample, hierarchies, [KAnonymity(k=3)], suppression_limit=0.02, population=admissions)
    levels = list(result.levels.values())
    released = result.table.to_pylist()
    release_keys = [tuple(r[c] for c in QI) for r in released]
    population_keys = generalise(admissions.to_pylist(), hierarchies, levels)
    expected = risks(release_keys, population_keys, threshold=0.2)
    got = result.risk
    assert got.prosecutor_highest == pytest.approx(expected["prosecutor_highest"])
    assert got.prosecutor_average == pytest.approx(expected["prosecutor_average"])
    assert got.records_at_risk == pytest.approx(expected["records_at_risk"])
    assert got.journalist_highest == pytest.approx(expected["journalist_highest"])
    assert got.marketer == pytest.approx(expected["marketer"])
    assert got.journalist_highest <= got.prosecutor_highest


def test_without_a_population_journalist_risk_is_prosecutor_risk() -> None:
    risk = reidentification_risk(np.array([2, 3, 5, 0]))
    assert risk.journalist_highest == risk.prosecutor_highest == 0.5
    # The expected share of records re-identified is then one per class: classes / rows.
    assert risk.marketer == risk.prosecutor_average == 3 / 10


def test_utility_figures(admissions: pa.Table) -> None:
    result = anonymise(admissions, _hierarchies(admissions), [KAnonymity(k=5)], suppression_limit=0.05)
    sizes = pd.DataFrame(result.table.select(QI).to_pylist()).value_counts().to_numpy()
    n = admissions.num_rows
    assert result.utility.discernibility == int((sizes**2).sum()) + result.rows_suppressed * n
    assert result.utility.average_class_size == pytest.approx(sizes.mean())
    assert result.classes == len(sizes)
    assert 0 < result.utility.loss < 1


def test_no_solution_is_a_clear_error(admissions: pa.Table) -> None:
    tiny = admissions.slice(0, 3)
    with pytest.raises(NoSolutionError, match="allow more suppression"):
        anonymise(tiny, _hierarchies(tiny), [KAnonymity(k=5)])


def test_l_diversity_needs_a_sensitive_attribute(admissions: pa.Table) -> None:
    with pytest.raises(ConfigError, match="sensitive attribute"):
        anonymise(admissions, _hierarchies(admissions), [DistinctLDiversity(l=2)])


def test_a_value_outside_the_hierarchy_names_the_column(admissions: pa.Table) -> None:
    hierarchies = _hierarchies(admissions.slice(0, 100))
    with pytest.raises(InputError, match=r"'(region|age|admitted)'") as err:
        anonymise(admissions, hierarchies, [KAnonymity(k=2)])
    assert err.value.field in QI


def test_suppression_limit_must_be_a_share(admissions: pa.Table) -> None:
    with pytest.raises(ConfigError, match="suppression limit"):
        anonymise(admissions, _hierarchies(admissions), [KAnonymity(k=2)], suppression_limit=1.5)

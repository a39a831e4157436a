"""Connected components against a brute-force union-find, on random graphs with long chains, and components
joined by later edges against the components of all edges at once."""

from __future__ import annotations

import itertools
import random

import pyarrow as pa
import pytest

from medspace.core import connect
from medspace.link._components import connected_components, joined_components


def _union_find(nodes: list[str], edges: list[tuple[str, str]]) -> dict[str, str]:
    parent = {n: n for n in nodes}

    def root(n: str) -> str:
        while parent[n] != n:
            n = parent[n]
        return n

    for a, b in edges:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {n: min(m for m in nodes if root(m) == root(n)) for n in nodes}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_components_equal_a_union_find(seed: int) -> None:
    rng = random.Random(seed)
    nodes = [f"n{i:04d}" for i in range(400)]
    order = nodes[:]
    rng.shuffle(order)
    # a chain of 150 nodes in random order (many rounds without pointer jumping), plus random edges
    edges = list(itertools.pairwise(order[:150]))
    edges += [(rng.choice(nodes), rng.choice(nodes)) for _ in range(120)]
    edges += [(nodes[5], nodes[5])]  # a self-loop
    edges += [("x_only_in_edges", nodes[7])]  # an end missing from the nodes table is a node too
    con = connect("duckdb")
    node_table = con.create_table("nodes", pa.table({"node": nodes}))
    a, b = zip(*edges, strict=True)
    edge_table = con.create_table("edges", pa.table({"a": list(a), "b": list(b)}))
    out = connected_components(con, node_table, edge_table).to_pyarrow().to_pylist()
    got = {r["node"]: r["component"] for r in out}
    assert len(out) == len(got) == len(nodes) + 1
    assert got == _union_find([*nodes, "x_only_in_edges"], edges)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_joining_components_by_more_edges_equals_components_of_all_edges(seed: int) -> None:
    rng = random.Random(seed)
    nodes = [f"n{i:04d}" for i in range(400)]
    first = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(250)]
    # later edges: some inside one component, some joining several into one, a chain across components
    more = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(40)] + list(itertools.pairwise(nodes[::37]))
    con = connect("duckdb")
    node_table = con.create_table("nodes", pa.table({"node": nodes}))

    def edge_table(name: str, edges: list[tuple[str, str]]) -> object:
        a, b = zip(*edges, strict=True)
        return con.create_table(name, pa.table({"a": list(a), "b": list(b)}))

    components = connected_components(con, node_table, edge_table("first", first))
    out = joined_components(con, components, edge_table("more", more), name="more").to_pyarrow().to_pylist()
    got = {r["node"]: r["component"] for r in out}
    assert len(out) == len(got) == len(nodes)
    assert got == _union_find(nodes, first + more)
    assert len(set(got.values())) < len(set(_union_find(nodes, first).values()))  # the edges did join some

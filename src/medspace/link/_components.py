"""Connected components of a record graph, as Ibis expressions that run on DuckDB and on Spark.

Links between records (same resident ID, a shared visit number, a probabilistic match) are edges; a person is
a connected component. Components are found by min-label propagation: every record takes the smallest label
among itself and its neighbours until nothing changes. Each round is one join and one group-by pushed down to
the engine; only the count of changed labels comes back to Python. Rounds needed grow with the graph's
diameter, which stays small here (records hang off a few keys), so a handful of rounds suffices.
"""

from __future__ import annotations

from typing import Any

from ibis import BaseBackend

from medspace.core import MedspaceError, materialise

MAX_ROUNDS = 50


def connected_components(con: BaseBackend, nodes: Any, edges: Any) -> Any:
    """Label every node with the smallest node id of its connected component.

    Args:
        con: the backend the tables live on; each round is materialised there.
        nodes: Ibis table with a string column ``node``.
        edges: Ibis table with string columns ``a`` and ``b`` (undirected; self-loops and duplicates allowed).

    Returns:
        Ibis table ``node, component`` with one row per node.

    Example:
        >>> import ibis
        >>> import pyarrow as pa
        >>> from medspace.core import connect
        >>> con = connect("duckdb")
        >>> nodes = con.create_table("nodes", pa.table({"node": ["a", "b", "c", "d"]}))
        >>> edges = con.create_table("edges", pa.table({"a": ["b"], "b": ["c"]}))
        >>> out = connected_components(con, nodes, edges).order_by("node").to_pyarrow()
        >>> out.column("component").to_pylist()
        ['a', 'b', 'b', 'd']
    """
    both = edges.select(a=edges.a, b=edges.b).union(edges.select(a=edges.b, b=edges.a)).distinct()
    both = materialise(con, both.filter(both.a != both.b), "link_cc_edges")
    labels = materialise(
        con, nodes.select(node=nodes.node, component=nodes.node).distinct(), "link_cc_labels_0"
    )
    for round_ in range(1, MAX_ROUNDS + 1):
        via_neighbour = both.join(labels, both.b == labels.node).select(
            node=both.a, component=labels.component
        )
        candidates = via_neighbour.union(labels.select("node", "component"), distinct=False)
        updated = candidates.group_by("node").aggregate(component=candidates.component.min())
        updated = materialise(con, updated, f"link_cc_labels_{round_}")
        changed = updated.join(labels, "node").filter(lambda t: t.component != t.component_right).count()
        # each round's labels are cached on the tables' own backend, so the next round reads them there
        if int(changed.execute()) == 0:
            return updated
        labels = updated
    raise MedspaceError(
        f"linking did not converge in {MAX_ROUNDS} rounds; the record graph is unexpectedly deep"
    )

"""Connected components of a record graph, as Ibis expressions that run on DuckDB and on Spark.

Links between records (same resident ID, a shared visit number, a probabilistic match) are edges; a person is
a connected component. Components are found by min-label propagation with pointer jumping: every node takes
the smallest label among itself and its neighbours, then the label of that label, until nothing changes.
Labels are dense integers (string keys are numbered once, in sort order, and named again at the end), so each
round is an integer join and group-by pushed down to the engine; only the count of changed labels comes back
to Python. Pointer jumping lets a label cross a long chain of records in a few rounds rather than one hop a
round.
"""

from __future__ import annotations

from typing import Any

import ibis
from ibis import BaseBackend

from medspace.core import MedspaceError, forget, materialise

MAX_ROUNDS = 50


def connected_components(con: BaseBackend, nodes: Any, edges: Any, *, name: str = "link_cc") -> Any:
    """Label every node with the smallest node id of its connected component.

    Args:
        con: the backend the tables live on; each round is materialised there.
        nodes: Ibis table with a string column ``node``.
        edges: Ibis table with string columns ``a`` and ``b`` (undirected; self-loops and duplicates allowed);
            an end missing from ``nodes`` is a node too.
        name: prefix of the work tables; the result is the table ``<name>_components``, so two graphs in
            one connection need two names while both results are in use.

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
    names = ibis.union(
        nodes.select(node=nodes.node), edges.select(node=edges.a), edges.select(node=edges.b), distinct=True
    )
    names = names.filter(names.node.notnull())
    # numbered in the nodes' sort order, so the smallest number of a component is its smallest node
    names = materialise(
        con, names.mutate(id=ibis.dense_rank().over(order_by=names.node).cast("int64")), f"{name}_names"
    )
    ia = names.select(a=names.node, ia=names.id)
    ib = names.select(b=names.node, ib=names.id)
    numbered = edges.join(ia, "a").join(ib, "b").select("ia", "ib")
    both = numbered.select(a=numbered.ia, b=numbered.ib).union(numbered.select(a=numbered.ib, b=numbered.ia))
    both = materialise(con, both.filter(both.a != both.b).distinct(), f"{name}_edges")
    labels = materialise(con, names.select(node=names.id, component=names.id), f"{name}_labels_0")
    for round_ in range(1, MAX_ROUNDS + 1):
        via_neighbour = both.join(labels, both.b == labels.node).select(
            node=both.a, component=labels.component
        )
        candidates = via_neighbour.union(labels.select("node", "component"), distinct=False)
        hooked = candidates.group_by("node").aggregate(component=candidates.component.min())
        # a label is a node of the same component: taking its label jumps along the chain
        parent = labels.select(p_node=labels.node, p_component=labels.component)
        jumped = hooked.join(parent, hooked.component == parent.p_node)
        jumped = jumped.select(node=jumped.node, component=ibis.least(jumped.component, jumped.p_component))
        updated = materialise(con, jumped, f"{name}_labels_{round_}")
        changed = updated.join(labels, "node").filter(lambda t: t.component != t.component_right).count()
        done = int(changed.execute()) == 0
        forget(con, f"{name}_labels_{round_ - 1}")
        labels = updated
        if done:
            named = names.select(node_name=names.node, node_id=names.id)
            comp = names.select(component_name=names.node, component_id=names.id)
            out = labels.join(named, labels.node == named.node_id).join(
                comp, labels.component == comp.component_id
            )
            result = materialise(
                con, out.select(node=out.node_name, component=out.component_name), f"{name}_components"
            )
            for work in ("names", "edges", f"labels_{round_}"):
                forget(con, f"{name}_{work}")
            return result
    raise MedspaceError(
        f"linking did not converge in {MAX_ROUNDS} rounds; the record graph is unexpectedly deep"
    )


def joined_components(con: BaseBackend, components: Any, edges: Any, *, name: str) -> Any:
    """The components of `connected_components` after adding ``edges`` between their nodes.

    Only the components the new edges touch are joined, as a graph of components, so adding a few
    probabilistic matches to a million records costs a pass over the matches rather than a second pass over
    every record. A joined component takes the smallest label among the ones it joins: that label is its
    smallest node, so the result is the one `connected_components` gives over all the edges at once.

    Args:
        con: the backend the tables live on.
        components: ``node, component`` as `connected_components` returns it.
        edges: Ibis table with string columns ``a`` and ``b``, both nodes of ``components``.
        name: prefix of the work tables; the result is the table ``<name>_components``.

    Returns:
        Ibis table ``node, component`` with one row per node of ``components``.

    Example:
        >>> import pyarrow as pa
        >>> from medspace.core import connect
        >>> con = connect("duckdb")
        >>> nodes = con.create_table("nodes", pa.table({"node": ["a", "b", "c", "d"]}))
        >>> edges = con.create_table("edges", pa.table({"a": ["a"], "b": ["b"]}))
        >>> first = connected_components(con, nodes, edges)
        >>> more = con.create_table("more", pa.table({"a": ["d"], "b": ["b"]}))
        >>> out = joined_components(con, first, more, name="more").order_by("node").to_pyarrow()
        >>> out.column("component").to_pylist()
        ['a', 'a', 'c', 'a']
    """
    ca = components.select(a=components.node, ca=components.component)
    cb = components.select(b=components.node, cb=components.component)
    between = edges.join(ca, "a").join(cb, "b")
    between = between.filter(between.ca != between.cb).select(a=between.ca, b=between.cb)
    joined = connected_components(con, between.select(node=between.a), between, name=f"{name}_join")
    out = components.left_join(joined, components.component == joined.node)
    out = out.select(node=components.node, component=ibis.coalesce(joined.component, components.component))
    result = materialise(con, out, f"{name}_components")
    forget(con, f"{name}_join_components")
    return result

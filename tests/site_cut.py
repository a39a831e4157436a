"""The synthetic hospital's shipped site mapping cut down to some of its systems, for tests that damage
only some exports."""

from __future__ import annotations

from medspace.sources import Site, load_site


def cut_site(*systems: str) -> Site:
    """The synthetic hospital's site with only ``systems`` and the maps that read nothing else."""
    site = load_site("synthetic-hospital")
    keep = set(systems)
    maps = [
        m
        for m in site.maps
        if m.system in keep and all(lookup.table.split(".")[0] in keep for lookup in m.lookups)
    ]
    return site.model_copy(
        update={
            "systems": {name: spec for name, spec in site.systems.items() if name in keep},
            "maps": maps,
            "precedence": [s for s in site.precedence if s in keep],
            "patient_index": site.patient_index if site.patient_index in keep else systems[0],
        }
    )

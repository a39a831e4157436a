"""True laboratory work of one chunk: requests (申请单), tubes (条码) and result items, with values that
follow each person's conditions (HbA1c high in diabetes, a positive breath test in H. pylori infection, ...).

Requests are laid out in Python (there are few); result items, the largest table of the hospital, are
generated with NumPy column operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ._catalogue import Catalogue
from ._encounters import DAY, STATUS_DONE, VISIT_CHECKUP, VISIT_EMERGENCY, Stay, Visits
from ._population import Population


@dataclass
class LabWork:
    # one row per request
    req_person: NDArray[np.int64]
    req_visit: NDArray[np.str_]  # the true visit serial (outpatient registration or stay)
    req_kind: NDArray[np.str_]  # 门诊 / 急诊 / 体检 / 住院
    req_department: NDArray[np.int64]
    req_diagnosis: NDArray[np.int64]
    req_time: NDArray[np.int64]
    req_branch: NDArray[np.bool_]  # run by the branch lab
    # one row per tube
    tube_request: NDArray[np.int64]
    tube_panel_kind: NDArray[np.str_]  # specimen
    tube_tube: NDArray[np.str_]
    tube_collect: NDArray[np.int64]
    tube_receive: NDArray[np.int64]
    # one row per result item
    item_tube: NDArray[np.int64]
    item_test: NDArray[np.int64]  # index into catalogue.lab_tests
    item_value: NDArray[np.float64]  # in the test's canonical unit
    item_report: NDArray[np.int64]
    item_review: NDArray[np.int64]


def draw_lab(
    catalogue: Catalogue,
    pop: Population,
    visits: Visits,
    stays: list[Stay],
    rng: np.random.Generator,
    branch_share: float,
) -> LabWork:
    conditions = catalogue.conditions
    tests = catalogue.lab_tests
    panel_of_test = {t.code: t.panel for t in tests}
    cond_panels = [sorted({panel_of_test[t] for t in c.tests}) for c in conditions]
    checkup_panels = ["CBC", "LIVER", "RENAL", "GLU", "HBA1C", "LIPID"]

    persons: list[int] = []
    visit_ids: list[str] = []
    kinds: list[str] = []
    departments: list[int] = []
    diagnoses: list[int] = []
    times: list[int] = []
    panels: list[list[str]] = []

    def request(p: int, visit: str, kind: str, dept: int, diag: int, t: int, ps: list[str]) -> None:
        persons.append(p)
        visit_ids.append(visit)
        kinds.append(kind)
        departments.append(dept)
        diagnoses.append(diag)
        times.append(t)
        panels.append(ps)

    n_conditions = len(conditions)
    lab_u = rng.random(len(visits.person))
    ubt_u = rng.random(len(visits.person))
    for j in range(len(visits.person)):
        if visits.status[j] != STATUS_DONE:
            continue
        p, kind, d = int(visits.person[j]), int(visits.kind[j]), int(visits.diagnosis[j])
        t = int(visits.start[j]) + 1800
        if kind == VISIT_CHECKUP:
            ps = [*checkup_panels, *(["UBT"] if ubt_u[j] < 0.5 else [])]
            request(p, str(visits.serial[j]), "体检", int(visits.department[j]), d, t, ps)
        elif kind == VISIT_EMERGENCY:
            if lab_u[j] < 0.6:
                request(p, str(visits.serial[j]), "急诊", int(visits.department[j]), d, t, ["CBC", "ELEC"])
        elif d < n_conditions and cond_panels[d] and lab_u[j] < 0.45:
            request(p, str(visits.serial[j]), "门诊", int(visits.department[j]), d, t, cond_panels[d])

    routine = list(catalogue.inpatient_routine_panels)
    for s in stays:
        extra = cond_panels[s.diagnosis] if s.diagnosis < n_conditions else []
        first = s.admit + int(rng.integers(1, 6)) * 3600
        request(s.person, s.serial, "住院", s.department, s.diagnosis, first, sorted({*routine, *extra}))
        day = 1
        while s.admit + day * DAY < s.discharge - 6 * 3600:
            t = s.admit // DAY * DAY + day * DAY + 6 * 3600 + int(rng.integers(0, 3600))
            dept = s.discharge_department if s.transfer_at is not None and t > s.transfer_at else s.department
            # daily blood count, electrolytes and renal function; liver function every third day
            repeat = [
                "CBC",
                "ELEC",
                "RENAL",
                *(["LIVER"] if day % 3 == 0 else []),
                *(["GLU"] if "GLU" in extra else []),
            ]
            request(s.person, s.serial, "住院", dept, s.diagnosis, t, repeat)
            day += 1

    n_req = len(persons)
    req_time = np.array(times, dtype=np.int64)
    # Tubes: the panels of one request that share a tube type go into one tube.
    panel_tube = {p.code: (p.specimen, p.tube) for p in catalogue.lab_panels}
    tube_request: list[int] = []
    tube_specimen: list[str] = []
    tube_type: list[str] = []
    item_tube_l: list[int] = []
    item_test_l: list[int] = []
    panel_tests: dict[str, list[int]] = {}
    for i, test in enumerate(tests):
        panel_tests.setdefault(test.panel, []).append(i)
    for r, ps in enumerate(panels):
        tubes: dict[tuple[str, str], int] = {}
        for panel in ps:
            key = panel_tube[panel]
            if key not in tubes:
                tubes[key] = len(tube_request)
                tube_request.append(r)
                tube_specimen.append(key[0])
                tube_type.append(key[1])
            for ti in panel_tests[panel]:
                item_tube_l.append(tubes[key])
                item_test_l.append(ti)

    tube_req = np.array(tube_request, dtype=np.int64)
    n_tubes = len(tube_req)
    collect = req_time[tube_req] + rng.integers(5, 60, n_tubes) * 60
    receive = collect + rng.integers(10, 90, n_tubes) * 60

    item_tube = np.array(item_tube_l, dtype=np.int64)
    item_test = np.array(item_test_l, dtype=np.int64)
    n_items = len(item_tube)
    item_person = np.array(persons, dtype=np.int64)[tube_req[item_tube]] if n_items else np.zeros(0, np.int64)
    mean = np.array([t.normal[0] for t in tests])[item_test]
    sd = np.array([t.normal[1] for t in tests])[item_test]
    cond_index = {c.key: i for i, c in enumerate(conditions)}
    for ti, test in enumerate(tests):
        is_test = item_test == ti
        # the first listed condition the person has sets the distribution (lists go from most specific)
        for cond_key, (m, spread) in reversed(list(test.abnormal.items())):
            hit = is_test & pop.conditions[item_person, cond_index[cond_key]]
            mean = np.where(hit, m, mean)
            sd = np.where(hit, spread, sd)
    value = np.maximum(rng.normal(mean, sd), np.array([t.normal[0] for t in tests])[item_test] * 0.05)
    decimals = np.array([t.decimals for t in tests])[item_test]
    value = np.round(value * 10.0**decimals) / 10.0**decimals
    report = receive[item_tube] + rng.integers(30, 240, n_items) * 60
    review = report + rng.integers(3, 60, n_items) * 60
    return LabWork(
        req_person=np.array(persons, dtype=np.int64),
        req_visit=np.array(visit_ids, dtype=str),
        req_kind=np.array(kinds, dtype=str),
        req_department=np.array(departments, dtype=np.int64),
        req_diagnosis=np.array(diagnoses, dtype=np.int64),
        req_time=req_time,
        req_branch=rng.random(n_req) < branch_share,
        tube_request=tube_req,
        tube_panel_kind=np.array(tube_specimen, dtype=str),
        tube_tube=np.array(tube_type, dtype=str),
        tube_collect=collect,
        tube_receive=receive,
        item_tube=item_tube,
        item_test=item_test,
        item_value=value,
        item_report=report,
        item_review=review,
    )

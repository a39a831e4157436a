"""The true people behind the synthetic hospital: identities, ages and chronic conditions.

The population is drawn once for the whole hospital (it is small next to the event tables) so that resident
IDs can be made unique across all chunks; events are then generated chunk by chunk from slices of it.
Names, addresses and phone prefixes come from Faker's zh_CN data; sampling uses NumPy so it is fast and
deterministic for a seed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache

import numpy as np
from numpy.typing import NDArray

from medspace.core import region_codes

from ._catalogue import Catalogue, Condition
from ._numbering import zero_padded

EPOCH = dt.date(1970, 1, 1)
# GB 11643-1999 §5.2: weights of the first 17 characters and the check character table.
_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_ID_CHECK = np.array(list("10X98765432"))


@dataclass(frozen=True)
class NamePools:
    """Faker's zh_CN pools, flattened into arrays that NumPy can sample from."""

    surnames: NDArray[np.str_]
    surname_p: NDArray[np.float64]
    given_male: NDArray[np.str_]
    given_female: NDArray[np.str_]
    cities: NDArray[np.str_]
    provinces: NDArray[np.str_]
    districts: NDArray[np.str_]
    phone_prefixes: NDArray[np.str_]
    other_regions: NDArray[np.str_]


@cache
def name_pools(local_regions: tuple[str, ...]) -> NamePools:
    from faker.providers.address.zh_CN import Provider as Address
    from faker.providers.person.zh_CN import Provider as Person
    from faker.providers.phone_number.zh_CN import Provider as Phone

    weights = np.array(list(Person.last_names.values()), dtype=np.float64)
    local_prefix = {code[:2] for code in local_regions}
    return NamePools(
        surnames=np.array(list(Person.last_names.keys())),
        surname_p=weights / weights.sum(),
        given_male=np.array(sorted({c for name in Person.first_names_male for c in name})),
        given_female=np.array(sorted({c for name in Person.first_names_female for c in name})),
        cities=np.array([c for c in Address.cities if c not in ("上海",)]),
        provinces=np.array([p for p in Address.provinces if p != "上海市"]),
        districts=np.array(Address.districts),
        phone_prefixes=np.array([str(p) for p in Phone.phonenumber_prefixes]),
        other_regions=np.array(sorted(c for c in region_codes() if c[:2] not in local_prefix)),
    )


@dataclass
class Population:
    """Column arrays of the true persons (index i is person ``person_id[i]``)."""

    person_id: NDArray[np.str_]
    sex: NDArray[np.str_]  # "M" / "F"
    birth_day: NDArray[np.int64]  # days since 1970-01-01
    name: NDArray[np.str_]
    resident_id: NDArray[np.str_]
    region_code: NDArray[np.str_]
    phone: NDArray[np.str_]
    province: NDArray[np.str_]
    city: NDArray[np.str_]
    district: NDArray[np.str_]
    street: NDArray[np.str_]
    conditions: NDArray[np.bool_]  # persons x catalogue conditions
    condition_keys: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.person_id)

    def slice(self, start: int, stop: int) -> Population:
        cut = slice(start, stop)
        return Population(
            **{
                name: getattr(self, name)[cut]
                for name in (
                    "person_id",
                    "sex",
                    "birth_day",
                    "name",
                    "resident_id",
                    "region_code",
                    "phone",
                    "province",
                    "city",
                    "district",
                    "street",
                    "conditions",
                )
            },
            condition_keys=self.condition_keys,
        )

    def address(self, i: int) -> str:
        return f"{self.province[i]}{self.city[i]}{self.district[i]}{self.street[i]}"


def resident_ids(
    region: NDArray[np.str_], birth_day: NDArray[np.int64], seq: NDArray[np.int64]
) -> NDArray[np.str_]:
    """Vectorised GB 11643 resident IDs: region + YYYYMMDD + 3-digit sequence + check character."""
    births = np.datetime_as_string(birth_day.astype("datetime64[D]"), unit="D")
    body = np.char.add(np.char.add(region, np.char.replace(births, "-", "")), zero_padded(seq, 3))
    digits = body.view(np.uint32).reshape(len(body), 17).astype(np.int64) - ord("0")
    check = _ID_CHECK[(digits @ _ID_WEIGHTS) % 11]
    return np.char.add(body, check)


def _condition_order(conditions: tuple[Condition, ...]) -> list[int]:
    """Indices of conditions such that every condition comes after those it depends on."""
    index = {c.key: i for i, c in enumerate(conditions)}
    order: list[int] = []
    seen: set[int] = set()

    def visit(i: int) -> None:
        if i in seen:
            return
        seen.add(i)
        c = conditions[i]
        for dep in (*c.risk, *([c.requires] if c.requires else [])):
            visit(index[dep])
        order.append(i)

    for i in range(len(conditions)):
        visit(i)
    return order


def draw_population(catalogue: Catalogue, patients: int, seed: int, start: dt.date) -> Population:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC0FFEE]))
    local = catalogue.hospital.local_regions
    pools = name_pools(tuple(sorted(local)))
    n = patients
    sex = np.where(rng.random(n) < 0.48, "M", "F")
    # Hospital patients skew old: a few children, most adults around 55.
    age_years = np.where(rng.random(n) < 0.06, rng.uniform(0, 18, n), np.clip(rng.normal(54, 17, n), 18, 99))
    start_day = (start - EPOCH).days
    birth_day = (start_day - age_years * 365.25).astype(np.int64)

    surname = rng.choice(pools.surnames, size=n, p=pools.surname_p)
    male = sex == "M"
    g1 = np.where(male, rng.choice(pools.given_male, n), rng.choice(pools.given_female, n))
    g2 = np.where(male, rng.choice(pools.given_male, n), rng.choice(pools.given_female, n))
    given = np.where(rng.random(n) < 0.75, np.char.add(g1, g2), g1)
    name = np.char.add(surname, given)

    local_codes = np.array(sorted(local))
    is_local = rng.random(n) < 0.65
    region = np.where(is_local, rng.choice(local_codes, n), rng.choice(pools.other_regions, n))
    seq = rng.integers(0, 500, n) * 2 + male  # odd sequence = male (GB 11643 §4.3)
    ids = resident_ids(region, birth_day, seq)
    # Resident IDs are unique in reality: redraw the sequence where two people collide.
    while True:
        _, first = np.unique(ids, return_index=True)
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        if not dup.any():
            break
        seq[dup] = rng.integers(0, 500, int(dup.sum())) * 2 + male[dup]
        ids[dup] = resident_ids(region[dup], birth_day[dup], seq[dup])

    prefix = rng.choice(pools.phone_prefixes, n)
    phone = np.char.add(prefix, zero_padded(rng.integers(0, 10**8, n), 8))

    lives_local = rng.random(n) < 0.9
    local_names = np.array([local[c] for c in local_codes])
    # Most local residents live in the district their ID was issued in.
    same_district = is_local & (rng.random(n) < 0.7)
    id_district = np.array([local.get(r, "") for r in region])
    district = np.where(
        lives_local,
        np.where(same_district, id_district, rng.choice(local_names, n)),
        np.char.add(rng.choice(pools.districts, n), "区"),
    )
    province = np.where(lives_local, catalogue.hospital.city, rng.choice(pools.provinces, n))
    city = np.where(lives_local, "", np.char.add(rng.choice(pools.cities, n), "市"))
    road = np.char.add(rng.choice(pools.cities, n), np.where(rng.random(n) < 0.6, "路", "街"))
    # Shanghai-style addresses: "<road><lane>弄<building>号<room>室" or "<road><number>号".
    house = np.char.add(np.char.add(road, rng.integers(1, 1500, n).astype(str)), "号")
    lane = np.char.add(np.char.add(road, rng.integers(1, 900, n).astype(str)), "弄")
    building = np.char.add(
        np.char.add(rng.integers(1, 40, n).astype(str), "号"), rng.integers(101, 2405, n).astype(str)
    )
    street = np.where(rng.random(n) < 0.3, house, np.char.add(np.char.add(lane, building), "室"))

    conditions = _draw_conditions(catalogue, rng, sex, age_years)
    return Population(
        person_id=np.char.add("P", zero_padded(np.arange(1, n + 1), 8)),
        sex=sex,
        birth_day=birth_day,
        name=name,
        resident_id=ids,
        region_code=region,
        phone=phone,
        province=province,
        city=city,
        district=district,
        street=street,
        conditions=conditions,
        condition_keys=tuple(c.key for c in catalogue.conditions),
    )


def _draw_conditions(
    catalogue: Catalogue, rng: np.random.Generator, sex: NDArray[np.str_], age: NDArray[np.float64]
) -> NDArray[np.bool_]:
    conds = catalogue.conditions
    index = {c.key: i for i, c in enumerate(conds)}
    has = np.zeros((len(sex), len(conds)), dtype=bool)
    for i in _condition_order(conds):
        c = conds[i]
        p = np.full(len(sex), c.prevalence)
        if c.age_double_years:
            p *= 2.0 ** ((age - 55) / c.age_double_years)
        p = np.where(age < 18, p * 0.05, p)
        if c.sex:
            p = np.where(sex == c.sex, p, 0.0)
        for other, factor in c.risk.items():
            p = np.where(has[:, index[other]], p * factor, p)
        if c.requires:
            p = np.where(has[:, index[c.requires]], p, 0.0)
        has[:, i] = rng.random(len(sex)) < np.minimum(p, 0.9)
    return has

"""How each system holds a person's identity: its own patient numbers, and typos, variants and gaps.

Every system keeps its own patient index, so a typo made when the person was registered in that system
shows on all of that system's rows for the person. Which persons got which variant is drawn per system.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ._config import DefectRates
from ._numbering import zero_padded
from ._population import NamePools, Population, resident_ids

# Multiplier and increment of each system's patient-number permutation (idx * a + b mod 10^8 is a
# bijection when a is coprime with 10), so numbers look unrelated across systems yet never collide.
_SCHEMES = {
    "his": ("10", 48271, 12345671),
    "his_duplicate": ("19", 16807, 55555553),
    "inpatient": ("", 69621, 7654321),
    "lis": ("L", 40693, 9999991),
    "pacs": ("PA", 39373, 3141593),
    "emr": ("E", 44497, 2718281),
    "surgery": ("S", 83857, 1618033),
    # the integrated profile: its HIS (one vendor, lab included) and the regional health platform
    "integrated": ("7", 27733, 4242421),
    "integrated_duplicate": ("8", 52711, 1212121),
    "platform": ("RP", 33331, 8675309),
}


def patient_numbers(scheme: str, global_index: NDArray[np.int64]) -> NDArray[np.str_]:
    prefix, a, b = _SCHEMES[scheme]
    return np.char.add(prefix, zero_padded(((global_index * a + b) % 10**8), 8))


@dataclass
class SystemIdentity:
    """One system's version of each person's identity, and which persons carry which defect."""

    name: NDArray[np.str_]
    birth_day: NDArray[np.int64]
    resident_id: NDArray[np.str_]
    phone: NDArray[np.str_]  # "" when missing
    address: NDArray[np.str_]
    name_typo: NDArray[np.bool_]
    birth_date_typo: NDArray[np.bool_]
    resident_id_typo: NDArray[np.bool_]
    phone_missing: NDArray[np.bool_]
    address_variant: NDArray[np.bool_]
    # an as-of export's identities keep the later (full) export's here, for its corrections
    later: SystemIdentity | None = None


def system_identity(
    pop: Population, pools: NamePools, rates: DefectRates, rng: np.random.Generator, city: str
) -> SystemIdentity:
    n = len(pop)
    name_typo = rng.random(n) < rates.name_typo
    birth_typo = rng.random(n) < rates.birth_date_typo
    id_typo = rng.random(n) < rates.resident_id_typo
    phone_missing = rng.random(n) < rates.phone_missing
    address_variant = rng.random(n) < rates.address_variant

    # Name: the last character replaced by another given-name character (a mis-typed homophone).
    pool = np.concatenate([pools.given_male, pools.given_female])
    replacement = rng.choice(pool, n)
    last = np.array([s[-1] for s in pop.name]) if n else np.array([], dtype=str)
    replacement = np.where(replacement == last, rng.choice(pool, n), replacement)
    still_same = replacement == last
    name_typo &= ~still_same
    typo_name = np.array([s[:-1] for s in pop.name]) if n else np.array([], dtype=str)
    name = np.where(name_typo, np.char.add(typo_name, replacement), pop.name)

    # Birth date: a slipped digit in the day or month moves it by days or months.
    shift = rng.choice(np.array([-20, -10, -9, -3, -1, 1, 2, 9, 10, 30, 31, -31]), n)
    birth = np.where(birth_typo, pop.birth_day + shift, pop.birth_day)

    # Resident ID: one of the first 17 digits changed. GB 11643's weights are all non-zero mod 11, so the
    # check character never matches again: every typo is detectable.
    position = rng.integers(0, 17, n)
    digit_shift = rng.integers(1, 10, n)
    ids = pop.resident_id.copy()
    for i in np.nonzero(id_typo)[0]:
        s = ids[i]
        p = int(position[i])
        ids[i] = s[:p] + str((int(s[p]) + int(digit_shift[i])) % 10) + s[p + 1 :]

    phone = np.where(phone_missing, "", pop.phone)
    full = np.char.add(np.char.add(np.char.add(pop.province, pop.city), pop.district), pop.street)
    # Variants: the city or province left out, or the district written without its suffix.
    without_city = np.char.add(pop.district, pop.street)
    short_district = np.char.add(
        np.char.add(pop.province, np.char.replace(np.char.replace(pop.district, "新区", ""), "区", "")),
        pop.street,
    )
    variant = np.where(rng.random(n) < 0.6, without_city, short_district)
    address = np.where(address_variant, variant, full)
    return SystemIdentity(
        name, birth, ids, phone, address, name_typo, birth_typo, id_typo, phone_missing, address_variant
    )


__all__ = ["SystemIdentity", "patient_numbers", "resident_ids", "system_identity"]

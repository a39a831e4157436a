"""Resident identity numbers (GB 11643-1999): valid and invalid examples, and generated IDs."""

from __future__ import annotations

import doctest
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

import medspace.core._identifiers
from medspace.core import (
    InputError,
    check_resident_id,
    make_resident_id,
    region_codes,
    resident_id_check_char,
    resident_id_sex,
)

TODAY = date(2025, 1, 1)


def reference_check_char(first17: str) -> str:
    """The check character computed independently: ISO 7064 MOD 11-2 with weights 2^(i-1) mod 11.

    Position i counts from the right, the check character itself being i = 1; the check character is the
    value c in 0..10 (10 written X) that makes sum(a_i * W_i) + c * W_1 = 1 (mod 11).
    """
    total = sum(int(digit) * pow(2, 17 - index, 11) for index, digit in enumerate(first17))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


def with_check(first17: str) -> str:
    return first17 + reference_check_char(first17)


@pytest.mark.parametrize(
    "value",
    [
        "11010519491231002X",  # the example in the standard's commentaries
        "310104198506151237",
        "44030520000229998X",  # leap day
        "510107190001010017",  # earliest accepted birth date
    ],
)
def test_valid_ids(value: str) -> None:
    assert check_resident_id(value, today=TODAY).valid
    assert check_resident_id(value, today=TODAY).reason is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "length"),
        ("1101051949123100", "length"),
        ("11010519491231002X0", "length"),
        (" 11010519491231002X", "length"),
        ("11010519491231002x", "characters"),  # GB 11643 uses a capital X only
        ("X1010519491231002X", "characters"),
        ("1101051949123100XX", "characters"),
        ("１１０１０５１９４９１２３１００２Ｘ", "characters"),  # full-width digits
        ("110105194912310021", "checksum"),
        ("110105194912310020", "checksum"),
        ("11010519491231003X", "checksum"),  # sequence changed, check character kept
        ("11010519941231002X", "checksum"),  # transposed year digits
        (with_check("11010519490231001"), "birth_date"),  # 31 February
        (with_check("11010519491301001"), "birth_date"),  # month 13
        (with_check("11010519490000001"), "birth_date"),
        (with_check("11010518991231001"), "birth_date"),  # before 1900
        (with_check("11010520250102001"), "birth_date"),  # after `today`
        (with_check("99999919800101001"), "region"),
        (with_check("11000019800101001"), "region"),  # province level, not a county
        (with_check("00000019800101001"), "region"),
    ],
)
def test_invalid_ids(value: str, reason: str) -> None:
    result = check_resident_id(value, today=TODAY)
    assert not result.valid
    assert result.reason == reason


def test_birth_date_defaults_to_today() -> None:
    assert check_resident_id(with_check("11010520990101001")).reason == "birth_date"


def test_check_char_of_the_example() -> None:
    assert resident_id_check_char("11010519491231002") == "X"


@pytest.mark.parametrize("body", ["", "1101051949123100", "1101051949123100X", "110105194912310021"])
def test_check_char_refuses_malformed_bodies(body: str) -> None:
    with pytest.raises(InputError):
        resident_id_check_char(body)


@given(st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_check_char_agrees_with_reference(body: str) -> None:
    assert resident_id_check_char(body) == reference_check_char(body)


@given(
    region=st.sampled_from(sorted(region_codes())),
    birth=st.dates(min_value=date(1900, 1, 1), max_value=TODAY),
    sequence=st.integers(min_value=0, max_value=999),
)
def test_made_ids_validate(region: str, birth: date, sequence: int) -> None:
    value = make_resident_id(region, birth, sequence)
    assert check_resident_id(value, today=TODAY).valid
    assert value[17] == reference_check_char(value[:17])
    assert resident_id_sex(value) == ("M" if sequence % 2 else "F")


@given(
    body=st.text(alphabet="0123456789", min_size=17, max_size=17),
    position=st.integers(min_value=0, max_value=16),
    delta=st.integers(min_value=1, max_value=9),
)
def test_any_single_digit_change_fails_the_checksum(body: str, position: int, delta: int) -> None:
    # ISO 7064 MOD 11-2 detects every single-digit substitution; checksum is checked before date and region.
    changed_digit = str((int(body[position]) + delta) % 10)
    changed = body[:position] + changed_digit + body[position + 1 :] + reference_check_char(body)
    assert check_resident_id(changed, today=TODAY).reason == "checksum"


def test_region_codes_are_county_level() -> None:
    codes = region_codes()
    assert "110105" in codes
    assert len(codes) > 2000
    assert all(len(code) == 6 and code.isdigit() and not code.endswith("00") for code in codes)


@pytest.mark.parametrize(
    ("region", "birth", "sequence"),
    [
        ("999999", date(1980, 1, 1), 1),
        ("110000", date(1980, 1, 1), 1),
        ("110105", date(1899, 12, 31), 1),
        ("110105", date(1980, 1, 1), -1),
        ("110105", date(1980, 1, 1), 1000),
    ],
)
def test_make_resident_id_refuses_bad_parts(region: str, birth: date, sequence: int) -> None:
    with pytest.raises(InputError):
        make_resident_id(region, birth, sequence)


@pytest.mark.parametrize(("value", "sex"), [("11010519491231002X", "F"), ("310104198506151237", "M")])
def test_sex(value: str, sex: str) -> None:
    assert resident_id_sex(value) == sex


@pytest.mark.parametrize("value", ["", "11010519491231002x", "1101051949123100"])
def test_sex_refuses_malformed_ids(value: str) -> None:
    with pytest.raises(InputError):
        resident_id_sex(value)


def test_input_error_does_not_echo_the_value() -> None:
    with pytest.raises(InputError) as excinfo:
        resident_id_sex("11010519491231002x")
    assert "11010519491231002" not in str(excinfo.value)


def test_docstring_examples() -> None:
    assert doctest.testmod(medspace.core._identifiers).failed == 0

"""The error hierarchy: message composition, structured fields, exit codes."""

from __future__ import annotations

import doctest
import pickle

import pytest

import medspace.core.errors
from medspace.core import ConfigError, InputError, MedspaceError, SpecError


def test_message_names_file_row_and_field() -> None:
    err = InputError(
        "check character is wrong; the row goes to quarantine",
        file="hospital/his/patients.csv",
        row=12,
        field="SFZH",
    )
    assert str(err) == (
        "hospital/his/patients.csv, row 12, field SFZH: check character is wrong; the row goes to quarantine"
    )
    assert (err.file, err.row, err.field, err.rule) == ("hospital/his/patients.csv", 12, "SFZH", None)


def test_rule_is_appended() -> None:
    err = InputError("bad date; fix the export", field="B12", rule="front sheet datetime format")
    assert str(err) == "field B12: bad date; fix the export (rule: front sheet datetime format)"


def test_message_alone() -> None:
    assert str(ConfigError("--patients must be at least 1")) == "--patients must be at least 1"
    assert ConfigError("x").location is None


def test_partial_location() -> None:
    assert str(SpecError("unknown key 'colour'; remove it", file="specs/his.yaml")) == (
        "specs/his.yaml: unknown key 'colour'; remove it"
    )
    assert str(InputError("empty value", row=3)) == "row 3: empty value"


@pytest.mark.parametrize("cls", [SpecError, InputError, ConfigError])
def test_user_errors_are_value_errors_under_one_root(cls: type[MedspaceError]) -> None:
    err = cls("message")
    assert isinstance(err, MedspaceError)
    assert isinstance(err, ValueError)
    assert err.exit_code == 1


def test_errors_survive_pickling() -> None:
    # Worker processes send errors back to the parent by pickling them.
    err = InputError("bad value", file="lis/items.csv", row=7, field="JG", rule="numeric result")
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is InputError
    assert str(copy) == str(err)
    assert (copy.file, copy.row, copy.field, copy.rule) == ("lis/items.csv", 7, "JG", "numeric result")


def test_docstring_examples() -> None:
    assert doctest.testmod(medspace.core.errors).failed == 0

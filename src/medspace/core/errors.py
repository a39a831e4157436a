"""The errors medspace raises when a user's input, spec or configuration is wrong.

Every error derives from one root, `MedspaceError`, so the command line can turn any of them into an exit code
and a one-line message without a traceback. User-facing errors carry where the problem is (file, row, field)
and which rule it broke as structured fields, so callers and reports can use them without parsing text.

Messages say what failed, where, and what to do. They never contain patient values (a resident ID, a name) and
no ANSI colour: they end up in logs and quality reports that leave the hospital's data team.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConfigError",
    "InputError",
    "MedspaceError",
    "SpecError",
    "StaleInputError",
    "WorkspaceBusyError",
]


class MedspaceError(Exception):
    """Root of every error medspace raises on purpose.

    Args:
        message: What failed and what to do about it, without patient values.
        file: The file the problem is in, as the user knows it (e.g. relative to the workspace).
        row: The row number in that file, counted the way the user would count it.
        field: The field (column) name, as written in the source file.
        rule: The name of the rule or check that failed.

    Example:
        >>> str(MedspaceError("the export is empty; re-export it", file="his/patients.csv"))
        'his/patients.csv: the export is empty; re-export it'
    """

    #: Process exit code the command line uses for this error.
    exit_code: int = 1

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        field: str | None = None,
        rule: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.row = row
        self.field = field
        self.rule = rule

    @property
    def location(self) -> str | None:
        """Where the problem is, e.g. ``"his/patients.csv, row 12, field SFZH"``; None if not known."""
        parts: list[str] = []
        if self.file is not None:
            parts.append(self.file)
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.field is not None:
            parts.append(f"field {self.field}")
        return ", ".join(parts) or None

    def __str__(self) -> str:
        text = self.message
        if self.rule is not None:
            text = f"{text} (rule: {self.rule})"
        location = self.location
        return f"{location}: {text}" if location else text

    # Errors cross process boundaries (parallel workers pickle them back to the parent). The default
    # pickling re-creates the exception from `args` alone and would drop the keyword-only fields.
    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.file, self.row, self.field, self.rule))


def _rebuild(
    cls: type[MedspaceError],
    message: str,
    file: str | None,
    row: int | None,
    field: str | None,
    rule: str | None,
) -> MedspaceError:
    return cls(message, file=file, row=row, field=field, rule=rule)


class SpecError(MedspaceError, ValueError):
    """A spec shipped with or given to medspace (mapping, check, product, disclosure rule) is invalid.

    Example:
        >>> str(SpecError("unknown code system 'ICD-11'; use one of icd10_gb, icd10_nhsa", file="his.yaml"))
        "his.yaml: unknown code system 'ICD-11'; use one of icd10_gb, icd10_nhsa"
    """


class InputError(MedspaceError, ValueError):
    """Data handed to medspace is invalid: a source export, a value in it, or an argument to a function.

    Example:
        >>> err = InputError(
        ...     "check character is wrong; the row goes to quarantine",
        ...     file="hospital/his/patients.csv", row=12, field="SFZH", rule="GB 11643 checksum",
        ... )
        >>> err.location
        'hospital/his/patients.csv, row 12, field SFZH'
        >>> str(err).split(": ", 1)[1]
        'check character is wrong; the row goes to quarantine (rule: GB 11643 checksum)'
    """


class ConfigError(MedspaceError, ValueError):
    """medspace's own settings (command-line options, environment, workspace configuration) are invalid.

    Example:
        >>> str(ConfigError("--patients must be at least 1"))
        '--patients must be at least 1'
    """


class StaleInputError(InputError):
    """A stage's inputs do not belong together: one was built from another run of a stage than the one in
    the workspace now (or by an earlier medspace that recorded no lineage). The message names the stage to
    re-run.

    Example:
        >>> str(StaleInputError("link was built from an earlier ingest; run `medspace link` again"))
        'link was built from an earlier ingest; run `medspace link` again'
    """


class WorkspaceBusyError(MedspaceError):
    """Another medspace command holds the workspace's lock; the message names it (pid, host, command).

    Example:
        >>> WorkspaceBusyError("the workspace is in use").exit_code
        75
    """

    #: EX_TEMPFAIL of sysexits.h: try again later.
    exit_code = 75

"""What a person-matching model compares: the typed, engine-neutral spec of a Fellegi-Sunter model.

A `MatchSpec` lists the comparisons (one per identity field, each a ladder of agreement levels), the blocking
rules that pick which record pairs are scored at all, and how the model is trained without labels. The same
engine runs every spec: the hospital's Chinese identities (``person_cn.yaml``, shipped in ``data/``) and the
FEBRL benchmark use different specs, not different code. Specs never import DuckDB or splink; the engine
modules bind them to SQL.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medspace.core import SpecError

__all__ = [
    "BlockingRule",
    "Comparison",
    "DateComparison",
    "EditDistanceComparison",
    "ExactComparison",
    "JaroWinklerComparison",
    "MatchSpec",
    "TrainingSpec",
    "load_match_spec",
]

_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _ComparisonBase(_Frozen):
    column: str = Field(pattern=_IDENTIFIER, description="input column compared")
    term_frequency: bool = Field(
        False,
        description="scale the exact-agreement weight by how common the value is (common names weigh less)",
    )

    @property
    def name(self) -> str:
        """The comparison's name in results and explanations (its column)."""
        return self.column


class ExactComparison(_ComparisonBase):
    """Agree exactly or not at all (sex, phone, resident ID).

    Example:
        >>> ExactComparison(kind="exact", column="phone").name
        'phone'
    """

    kind: Literal["exact"]


class EditDistanceComparison(_ComparisonBase):
    """Exact, then within each edit (Levenshtein) distance, then different: one mistyped character in a name.

    Example:
        >>> EditDistanceComparison(kind="edit_distance", column="name", distances=(1,)).distances
        (1,)
    """

    kind: Literal["edit_distance"]
    distances: tuple[Annotated[int, Field(ge=1)], ...] = Field((1,), min_length=1)

    @model_validator(mode="after")
    def _ascending(self) -> EditDistanceComparison:
        if list(self.distances) != sorted(set(self.distances)):
            raise ValueError("distances must be strictly increasing")
        return self


class JaroWinklerComparison(_ComparisonBase):
    """Exact, then Jaro-Winkler similarity at or above each threshold, then different (addresses, names).

    ``normalise="cn_address"`` compares Chinese addresses without the 上海市 prefix and the 区/新区 suffix
    of the district, the variants the same address takes in different systems.

    Example:
        >>> JaroWinklerComparison(kind="jaro_winkler", column="address", normalise="cn_address").thresholds
        (0.9,)
    """

    kind: Literal["jaro_winkler"]
    thresholds: tuple[Annotated[float, Field(gt=0, lt=1)], ...] = Field((0.9,), min_length=1)
    normalise: Literal["none", "cn_address"] = "none"

    @model_validator(mode="after")
    def _descending(self) -> JaroWinklerComparison:
        if list(self.thresholds) != sorted(set(self.thresholds), reverse=True):
            raise ValueError("thresholds must be strictly decreasing")
        return self


class DateComparison(_ComparisonBase):
    """A birth date: exact, one field off, else; when a date is missing, ages in years instead.

    "One field off" is a slipped digit in the day or the month: the dates are at most ``max_days`` apart,
    or they share the year and the day of the month. When either side lacks the date and both have an age
    (``age_column``), ages at most ``max_age_difference`` apart form their own level.

    Example:
        >>> DateComparison(kind="date", column="birth_date", age_column="age_years").max_days
        31
    """

    kind: Literal["date"]
    max_days: int = Field(31, ge=1)
    age_column: str | None = Field(None, pattern=_IDENTIFIER)
    max_age_difference: int = Field(1, ge=0)


Comparison = Annotated[
    ExactComparison | EditDistanceComparison | JaroWinklerComparison | DateComparison,
    Field(discriminator="kind"),
]


class BlockingRule(_Frozen):
    """Score a pair only if it agrees exactly on all these columns (rules are OR-ed across the list).

    Example:
        >>> BlockingRule(columns=("name", "birth_date")).columns
        ('name', 'birth_date')
    """

    columns: tuple[Annotated[str, Field(pattern=_IDENTIFIER)], ...] = Field(min_length=1)


class TrainingSpec(_Frozen):
    """How the model learns without labels.

    u probabilities come from randomly sampled pairs (almost all non-matches); m probabilities from
    expectation maximisation over the pairs each ``em_blocking`` rule admits (a comparison is not
    estimated in a session whose rule blocks on its column, so rules must cover every comparison between
    them); the prior probability that two records match (lambda) from pairs that satisfy a
    ``prior_rules`` rule, taken to find ``prior_recall`` of all true matches.

    Training sees at most ``max_records`` records, a uniform sample by a hash of ``record_id`` when there are
    more: sampling records uniformly keeps lambda and the m and u probabilities in expectation (matching and
    non-matching pairs thin out alike), while the pairs blocking admits for EM stay bounded however large
    the hospital (blocking on a birth date alone admits pairs quadratic in records per day).
    """

    max_records: int = Field(100_000, ge=2)
    u_max_pairs: float = Field(5e6, gt=0)
    em_blocking: tuple[BlockingRule, ...] = Field(min_length=1)
    prior_rules: tuple[BlockingRule, ...] = Field(min_length=1)
    prior_recall: float = Field(0.8, gt=0, le=1)
    seed: int = 1


class MatchSpec(_Frozen):
    """A person-matching model: comparisons, blocking, training and the decision rule.

    Args:
        link_type: ``link_only`` scores only pairs from different sources (FEBRL A to B);
            ``link_and_dedupe`` also pairs within a source (a person registered twice in HIS);
            ``dedupe_only`` ignores sources.
        comparisons: one per identity field, each named by its column.
        blocking: pairs are scored only if some rule admits them.
        training: how m, u and lambda are estimated without labels.
        threshold_probability: pairs at or above this match probability are matches: returned and
            clustered.
        review_threshold_probability: pairs at or above this but below ``threshold_probability`` are
            doubtful: returned apart (``PersonMatches.review_pairs``) for a reviewer, never clustered.
        one_to_one: keep a cross-source pair only if each record is the other's best match in that source
            (sources without duplicates, like FEBRL4's two files).

    Example:
        >>> spec = load_match_spec("person_cn")
        >>> [c.name for c in spec.comparisons][:3]
        ['name', 'sex', 'birth_date']
    """

    link_type: Literal["link_only", "link_and_dedupe", "dedupe_only"] = "link_and_dedupe"
    comparisons: tuple[Comparison, ...] = Field(min_length=1)
    blocking: tuple[BlockingRule, ...] = Field(min_length=1)
    training: TrainingSpec
    threshold_probability: float = Field(0.5, gt=0, lt=1)
    review_threshold_probability: float | None = Field(None, gt=0, lt=1)
    one_to_one: bool = False

    @model_validator(mode="after")
    def _review_below_match(self) -> MatchSpec:
        review = self.review_threshold_probability
        if review is not None and review >= self.threshold_probability:
            raise ValueError("review_threshold_probability must be below threshold_probability")
        return self

    @model_validator(mode="after")
    def _names_unique(self) -> MatchSpec:
        names = [c.name for c in self.comparisons]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"each column is compared once; repeated: {', '.join(duplicated)}")
        reserved = {"record_id", "source"}
        if reserved & set(names):
            raise ValueError("record_id and source identify records and cannot be compared")
        return self

    def without(self, *columns: str) -> MatchSpec:
        """A copy that neither compares nor blocks on ``columns`` (a field a source does not have).

        Example:
            >>> spec = load_match_spec("person_cn").without("resident_id")
            >>> "resident_id" in spec.input_columns
            False
        """
        drop = set(columns)

        def keep(rules: tuple[BlockingRule, ...]) -> tuple[BlockingRule, ...]:
            return tuple(r for r in rules if not drop & set(r.columns))

        training = self.training.model_copy(
            update={
                "em_blocking": keep(self.training.em_blocking),
                "prior_rules": keep(self.training.prior_rules),
            }
        )
        data = self.model_dump()
        data["comparisons"] = [c.model_dump() for c in self.comparisons if c.column not in drop]
        data["blocking"] = [r.model_dump() for r in keep(self.blocking)]
        data["training"] = training.model_dump()
        return MatchSpec.model_validate(data)

    @property
    def input_columns(self) -> tuple[str, ...]:
        """Every input column the spec reads besides ``record_id`` and ``source``, in a stable order."""
        columns: list[str] = []
        for comparison in self.comparisons:
            columns.append(comparison.column)
            if isinstance(comparison, DateComparison) and comparison.age_column is not None:
                columns.append(comparison.age_column)
        for rule in (*self.blocking, *self.training.em_blocking, *self.training.prior_rules):
            columns.extend(rule.columns)
        return tuple(dict.fromkeys(columns))


def load_match_spec(name_or_path: str | Path) -> MatchSpec:
    """Load a match spec shipped with medspace (by name) or from a YAML file.

    Args:
        name_or_path: ``"person_cn"`` (Chinese hospital identities) or a path to a YAML file.

    Returns:
        The validated, frozen spec.

    Raises:
        SpecError: the file is missing, not YAML, or does not describe a valid spec.

    Example:
        >>> load_match_spec("person_cn").threshold_probability
        0.95
    """
    if isinstance(name_or_path, Path) or name_or_path.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
        label = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError(
                f"cannot read the match spec ({exc.strerror}); check the path", file=label
            ) from exc
    else:
        label = f"{name_or_path}.yaml"
        resource = resources.files("medspace.link").joinpath("data", label)
        if not resource.is_file():
            raise SpecError(f"no match spec named {name_or_path!r} ships with medspace; try 'person_cn'")
        text = resource.read_text(encoding="utf-8")
    try:
        return MatchSpec.model_validate(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise SpecError("the match spec is not valid YAML; fix its syntax", file=label) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise SpecError(f"invalid match spec: {first['msg']}", file=label, field=where or None) from exc

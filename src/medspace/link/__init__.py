"""Identity resolution: which records of the hospital's systems belong to the same person.

`match_records` trains a Fellegi-Sunter model on the records themselves (no labelled pairs), scores the pairs
its blocking rules admit and clusters them into persons; each kept pair comes with an explanation of which
fields agreed and how much each weighed. The model is a `MatchSpec` (shipped: ``person_cn`` for Chinese
hospital identities), so the same engine serves the hospital and benchmarks such as FEBRL.
"""

from medspace.link._link_workspace import LinkReport, link_workspace
from medspace.link._matching import PersonMatches, match_records
from medspace.link._probabilistic import ComparisonParameters
from medspace.link._registry import RegistryChanges, ReviewDecision, decide_review, review_queue
from medspace.link._scores import PersonScores, score_link, score_persons
from medspace.link._spec import (
    BlockingRule,
    Comparison,
    DateComparison,
    EditDistanceComparison,
    ExactComparison,
    JaroWinklerComparison,
    MatchSpec,
    TrainingSpec,
    load_match_spec,
)

__all__ = [
    "BlockingRule",
    "Comparison",
    "ComparisonParameters",
    "DateComparison",
    "EditDistanceComparison",
    "ExactComparison",
    "JaroWinklerComparison",
    "LinkReport",
    "MatchSpec",
    "PersonMatches",
    "PersonScores",
    "RegistryChanges",
    "ReviewDecision",
    "TrainingSpec",
    "decide_review",
    "link_workspace",
    "load_match_spec",
    "match_records",
    "review_queue",
    "score_link",
    "score_persons",
]

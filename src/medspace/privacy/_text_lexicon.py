"""The word lists text de-identification relies on, read from ``data/text/`` in the package.

Surnames, name context words, words that look like names but are not, hospital-number context words,
institution endings, province names and surrogate stems are data, not code, so a site can review and extend
them without touching a regular expression. They are read once, on first use, never at import time.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from medspace.core import SpecError

__all__ = ["Lexicon", "cjk_class_without", "lexicon", "word_pattern"]

# The first lines of surnames.txt (most frequent first) that may start a name found from weak context.
_COMMON_SURNAMES = 150


def _lines(name: str) -> list[str]:
    """Non-empty, non-comment lines of one word list."""
    text = files("medspace.privacy").joinpath("data", "text", name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _pairs(name: str, allowed: frozenset[str]) -> list[tuple[str, str]]:
    """Lines of ``<word> <tag>``; a tag outside ``allowed`` is a spec error naming the file and line."""
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(_lines(name), start=1):
        parts = line.split()
        if len(parts) != 2 or parts[1] not in allowed:
            raise SpecError(
                f"each entry must be '<word> <tag>' with tag one of {sorted(allowed)}; fix the word list",
                file=f"medspace/privacy/data/text/{name}",
                row=number,
            )
        pairs.append((parts[0], parts[1]))
    return pairs


@dataclass(frozen=True)
class Lexicon:
    """Every word list, parsed."""

    surnames: frozenset[str]
    surname_order: tuple[str, ...]  # most frequent first
    common_surnames: frozenset[str]
    compound_surnames: frozenset[str]
    given_name_chars: str
    stop_chars: frozenset[str]
    not_names: frozenset[str]
    name_context: dict[str, str]  # word -> before | weak | after | both
    name_roles: tuple[str, ...]
    hospital_number_context: tuple[str, ...]
    institution_suffixes: tuple[str, ...]
    institution_generic: tuple[str, ...]
    institution_leads: tuple[str, ...]
    provinces: tuple[str, ...]  # full and short forms
    surrogate_institutions: tuple[str, ...]
    surrogate_roads: tuple[str, ...]
    frequent_surnames: tuple[str, ...]  # in frequency order, for surrogates


@functools.cache
def lexicon() -> Lexicon:
    """The shipped word lists, read on first use.

    Returns:
        The parsed lists.

    Raises:
        SpecError: If a list is malformed.

    Example:
        >>> "欧阳" in lexicon().compound_surnames
        True
    """
    surnames = _lines("surnames.txt")
    institution = _pairs("institution_generic.txt", frozenset({"generic", "lead"}))
    return Lexicon(
        surnames=frozenset(surnames),
        surname_order=tuple(surnames),
        common_surnames=frozenset(surnames[:_COMMON_SURNAMES]),
        compound_surnames=frozenset(_lines("compound_surnames.txt")),
        given_name_chars="".join("".join(line.split()) for line in _lines("given_name_chars.txt")),
        stop_chars=frozenset("".join("".join(line.split()) for line in _lines("name_stop_chars.txt"))),
        not_names=frozenset(_lines("not_names.txt")),
        name_context=dict(_pairs("name_context.txt", frozenset({"before", "weak", "after", "both"}))),
        name_roles=tuple(_lines("name_roles.txt")),
        hospital_number_context=tuple(_lines("hospital_number_context.txt")),
        institution_suffixes=tuple(_lines("institution_suffixes.txt")),
        institution_generic=tuple(w for w, tag in institution if tag == "generic"),
        institution_leads=tuple(w for w, tag in institution if tag == "lead"),
        provinces=tuple(form for line in _lines("provinces.txt") for form in line.split()),
        surrogate_institutions=tuple(_lines("surrogate_institutions.txt")),
        surrogate_roads=tuple(_lines("surrogate_roads.txt")),
        frequent_surnames=tuple(surnames[:100]),
    )


# The CJK Unified Ideographs block (Unicode 4E00-9FFF) holds every character of a name, road or institution
# in GB 2312 and GB 18030's common set; extension blocks are rare in clinical text and left out.
_CJK_FIRST, _CJK_LAST = 0x4E00, 0x9FFF


def cjk_class_without(excluded: str | frozenset[str]) -> str:
    """A regex character class of CJK ideographs minus some characters, as explicit ranges.

    Python's ``re`` has no class subtraction, and a negative lookahead before every character was rejected
    as several times slower in the hot loops of name and address matching.

    Args:
        excluded: Characters to leave out.

    Returns:
        A class such as ``[\\u4e00-\\u4e5d\\u4e5f-\\u9fff]``.

    Example:
        >>> import re
        >>> no_zhu = re.compile(cjk_class_without("住"))
        >>> bool(no_zhu.fullmatch("住")), bool(no_zhu.fullmatch("路"))
        (False, True)
    """
    cut = sorted(ord(c) for c in set(excluded) if _CJK_FIRST <= ord(c) <= _CJK_LAST)
    ranges: list[str] = []
    low = _CJK_FIRST
    for point in [*cut, _CJK_LAST + 1]:
        if point > low:
            high = point - 1
            ranges.append(f"\\u{low:04x}" if high == low else f"\\u{low:04x}-\\u{high:04x}")
        low = point + 1
    return "[" + "".join(ranges) + "]"


def word_pattern(words: Iterable[str]) -> str:
    """A regex matching any of ``words``, built as a trie so matching costs the depth, not the word count.

    A plain alternation of a few hundred context words made Python's ``re`` try every word at every
    character, which was most of the scrubber's time; sharing prefixes (医师, 医生: 医(?:师|生)) removes that.
    Longer words win over their prefixes, as in a longest-first alternation.

    Args:
        words: Literal words, at least one.

    Returns:
        A non-capturing regex.

    Example:
        >>> word_pattern(["医师", "医生", "医师签名"])
        '(?=[医])(?:医(?:师(?:签名)?|生))'
    """
    trie: dict[str, Any] = {}
    for word in set(words):
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}
    # The leading lookahead lets re skip to the next possible first character in C (its "charset prefix"
    # scan), which it does not work out by itself for a group of alternatives.
    first = "".join(re.escape(c) for c in sorted(trie))
    return f"(?=[{first}])(?:{_trie_regex(trie)})"


def _trie_regex(node: dict[str, Any]) -> str:
    ends_here = "" in node
    branches = []
    for char in sorted(c for c in node if c):
        child = node[char]
        # Collapse chains with a single continuation and no word ending inside (签名 rather than 签(?:名)).
        chain = re.escape(char)
        while len(child) == 1 and "" not in child:
            ((next_char, child),) = child.items()
            chain += re.escape(next_char)
        branches.append(chain + (_trie_regex(child) if any(child) else ""))
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 and not ends_here else "(?:" + "|".join(branches) + ")"
    return body + "?" if ends_here else body

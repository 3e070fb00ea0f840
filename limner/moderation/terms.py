"""Term and pattern lists: the exact, explainable layer in front of the classifier.

A list names whole words or phrases (case-insensitive, any run of spaces between words) and
Python regexes, per category and severity. The packaged lists (terms.default.toml) are
deliberately short — only terms unambiguous in every context — and an organization's policy
adds its own. Minor-context words block in combination: with a sexual term here, or with a
sexual score from the classifier (the moderator joins the two).
"""

import re
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from limner.errors import StartupError
from limner.moderation.protocol import CATEGORIES, Severity, Signal

DEFAULT_TERMS_FILE = Path(__file__).parent / "terms.default.toml"
CHECK_NAME = "terms"
_SEVERITIES: tuple[Severity, ...] = ("severe", "mild")
# Characters people put inside words to slip past lists ("p-o-r-n" stays a problem of the
# classifier; zero-width and soft hyphens are simply removed).
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


class TermListError(StartupError):
    """A term list cannot be used (bad TOML, unknown category, a regex that does not compile)."""


@dataclass(frozen=True)
class TermLists:
    """Lists keyed by (category, severity); `minor_terms` mark a minor being depicted."""

    terms: Mapping[tuple[str, Severity], tuple[str, ...]] = field(default_factory=dict)
    patterns: Mapping[tuple[str, Severity], tuple[str, ...]] = field(default_factory=dict)
    minor_terms: tuple[str, ...] = ()

    @classmethod
    def load(cls, path: Path = DEFAULT_TERMS_FILE) -> "TermLists":
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise TermListError(f"cannot read term lists {path}: {exc}") from exc
        return cls.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "TermLists":
        """The TOML/JSON shape: {category: {severe, mild, patterns_severe, patterns_mild}},
        plus {minors_context: {terms}}."""
        terms: dict[tuple[str, Severity], tuple[str, ...]] = {}
        patterns: dict[tuple[str, Severity], tuple[str, ...]] = {}
        for category, lists in data.items():
            if category == "minors_context":
                continue
            if category not in CATEGORIES or not isinstance(lists, Mapping):
                raise TermListError(
                    f"unknown term-list category {category!r}; expected one of {CATEGORIES}"
                )
            for severity in _SEVERITIES:
                terms[(category, severity)] = _strings(lists.get(severity, []), category)
                patterns[(category, severity)] = _strings(
                    lists.get(f"patterns_{severity}", []), category
                )
        context = data.get("minors_context", {})
        minor_terms = _strings(context.get("terms", []) if isinstance(context, Mapping) else [], "")
        return cls(terms, patterns, minor_terms)

    def merged(self, extra: "TermLists") -> "TermLists":
        """These lists plus `extra`'s (an organization adds to the operator's lists)."""
        keys = set(self.terms) | set(extra.terms) | set(self.patterns) | set(extra.patterns)
        return TermLists(
            {k: (*self.terms.get(k, ()), *extra.terms.get(k, ())) for k in keys},
            {k: (*self.patterns.get(k, ()), *extra.patterns.get(k, ())) for k in keys},
            (*self.minor_terms, *extra.minor_terms),
        )


def _strings(values: object, category: str) -> tuple[str, ...]:
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
        raise TermListError(f"term list {category!r}: expected a list of non-empty strings")
    return tuple(v.strip() for v in values)


def normalize(text: str) -> str:
    """Compatibility-fold (full-width letters, ligatures), drop invisible characters, casefold."""
    return unicodedata.normalize("NFKC", text).translate(_INVISIBLE).casefold()


def _phrase_regex(terms: Iterable[str]) -> str:
    words = [r"\s+".join(map(re.escape, normalize(term).split())) for term in terms]
    return r"\b(?:" + "|".join(sorted(words, key=len, reverse=True)) + r")\b"


def _compile(regex: str, origin: str) -> re.Pattern[str]:
    try:
        return re.compile(regex, re.IGNORECASE)
    except re.error as exc:
        raise TermListError(f"{origin}: {regex!r} is not a valid regex: {exc}") from exc


class TermCheck:
    """Scores 1.0 for each category whose list matches; compiled once per list set."""

    name = CHECK_NAME

    def __init__(self, lists: TermLists) -> None:
        self._matchers: list[tuple[str, Severity, re.Pattern[str]]] = []
        for (category, severity), terms in lists.terms.items():
            if terms:
                self._matchers.append(
                    (category, severity, _compile(_phrase_regex(terms), category))
                )
        for (category, severity), patterns in lists.patterns.items():
            for pattern in patterns:
                self._matchers.append((category, severity, _compile(pattern, category)))
        self._minor = (
            _compile(_phrase_regex(lists.minor_terms), "minors_context")
            if (lists.minor_terms)
            else None
        )

    def score_prompt(self, prompt: str) -> list[Signal]:
        text = normalize(prompt)
        signals = []
        for category, severity, matcher in self._matchers:
            found = matcher.search(text)
            if found:
                signals.append(Signal(self.name, category, severity, 1.0, found.group(0)))
        minor = self.minor_mention(text)
        if minor and any(s.category == "sexual" for s in signals):
            signals.append(Signal(self.name, "minors", "severe", 1.0, f"{minor} + sexual term"))
        return signals

    def minor_mention(self, prompt: str) -> str | None:
        """The first word marking a minor, if any (the text may be normalized or not)."""
        if self._minor is None:
            return None
        found = self._minor.search(normalize(prompt))
        return found.group(0) if found else None

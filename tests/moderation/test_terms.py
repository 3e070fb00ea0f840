"""Term lists: whole words and phrases, patterns, severities, the minor-context rule."""

import pytest

from limner.moderation.terms import DEFAULT_TERMS_FILE, TermCheck, TermListError, TermLists

LISTS = TermLists.from_mapping(
    {
        "sexual": {"severe": ["hardcore porn", "genitals"], "mild": ["nude model"]},
        "violence": {"patterns_severe": [r"\bdismember\w*"]},
        "minors_context": {"terms": ["child", "schoolgirl"]},
    }
)


def categories(prompt: str) -> set[tuple[str, str]]:
    return {(s.category, s.severity) for s in TermCheck(LISTS).score_prompt(prompt)}


def test_whole_words_only_and_case_folded() -> None:
    assert categories("GENITALS visible") == {("sexual", "severe")}
    assert categories("a nude model posing") == {("sexual", "mild")}
    # "genitalsx" is not the word; "nude modelling clay" is not the phrase.
    assert categories("genitalsx and nude modelling clay") == set()


def test_phrases_match_across_any_whitespace_and_fullwidth_letters() -> None:
    assert categories("hardcore\n   porn") == {("sexual", "severe")}
    fullwidth = "".join(chr(ord(c) + 0xFEE0) for c in "genitals")  # NFKC folds them back
    assert categories(fullwidth) == {("sexual", "severe")}
    assert categories("geni\u200btals") == {("sexual", "severe")}  # zero-width space removed


def test_patterns() -> None:
    assert categories("a dismembered body") == {("violence", "severe")}


def test_minor_with_sexual_term_is_severe_minors() -> None:
    assert ("minors", "severe") in categories("a schoolgirl nude model")
    assert categories("a child flying a kite") == set()
    assert TermCheck(LISTS).minor_mention("A Child on a swing") == "child"


def test_signals_name_what_matched() -> None:
    (signal,) = TermCheck(LISTS).score_prompt("show genitals")
    assert (signal.check, signal.score, signal.detail) == ("terms", 1.0, "genitals")


def test_merged_lists_add_an_organizations_terms() -> None:
    extra = TermLists.from_mapping({"hate": {"mild": ["team rival mascot burning"]}})
    check = TermCheck(LISTS.merged(extra))
    assert {s.category for s in check.score_prompt("team rival mascot burning")} == {"hate"}
    assert {s.category for s in check.score_prompt("genitals")} == {"sexual"}


@pytest.mark.parametrize(
    "mapping",
    [
        {"weapons": {"severe": ["x"]}},
        {"sexual": {"severe": "not a list"}},
        {"sexual": {"severe": [""]}},
        {"sexual": {"patterns_severe": ["(unclosed"]}},
    ],
)
def test_bad_lists_are_refused_with_a_reason(mapping: dict[str, object]) -> None:
    with pytest.raises(TermListError):
        TermCheck(TermLists.from_mapping(mapping))


def test_packaged_lists_load_and_compile() -> None:
    check = TermCheck(TermLists.load(DEFAULT_TERMS_FILE))
    assert {s.category for s in check.score_prompt("hardcore porn, genitals visible")} == {"sexual"}
    assert check.score_prompt("a killer whale breaching at sunset") == []

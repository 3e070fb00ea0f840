"""The server's moderator end to end below HTTP: real term lists, the trained prompt classifier,
open_nsfw on real images, per-organization policy, plug-in checks and the decision log."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from limner.accounts.orgs import OPERATOR_ORGANIZATION_ID, Organizations
from limner.moderation.image_classifiers import OpenNsfwCheck
from limner.moderation.moderator import PolicyModerator, build_moderator
from limner.moderation.protocol import Subject
from limner.storage.db import Database

ORG = OPERATOR_ORGANIZATION_ID


def subject(level: str = "auto", request_id: str = "req_test") -> Subject:
    return Subject(request_id, ORG, level)  # type: ignore[arg-type]


@pytest.fixture()
def moderator(database: Database) -> Iterator[PolicyModerator]:
    Organizations(database).bootstrap(None, None)
    moderator = build_moderator(database)
    yield moderator
    moderator.decisions.close()


def drawing() -> Image.Image:
    image = Image.new("RGB", (256, 256), "skyblue")
    ImageDraw.Draw(image).ellipse((64, 64, 192, 192), fill="orange")
    return image


@pytest.mark.parametrize(
    "prompt",
    [
        "a red circle",
        "a killer whale breaching at sunset",
        "a fencing duel in a sunlit hall",
        "a drag race at night, long exposure",
        "a bloody mary cocktail on a bar",
        "kids playing in a sandbox",
    ],
)
def test_benign_prompts_pass(moderator: PolicyModerator, prompt: str) -> None:
    assert moderator.check_prompt(prompt, subject()).allowed


def test_severe_prompts_are_refused_at_both_levels(moderator: PolicyModerator) -> None:
    for level in ("auto", "low"):
        verdict = moderator.check_prompt("hardcore porn, genitals visible", subject(level))
        assert not verdict.allowed
        assert verdict.categories == ("sexual",)


def test_mild_prompts_are_refused_at_auto_and_pass_at_low(moderator: PolicyModerator) -> None:
    prompt = "a topless sunbather on a crowded beach"
    refused = moderator.check_prompt(prompt, subject("auto"))
    assert not refused.allowed and "sexual" in refused.categories
    assert moderator.check_prompt(prompt, subject("low")).allowed


def test_the_classifier_catches_what_no_list_names(moderator: PolicyModerator) -> None:
    """No term matches this wording; only the classifier over the sentence embedding can."""
    prompt = "a man slicing his own forearm with a razor blade, blood dripping into the sink"
    assert moderator._term_check(moderator.policies.policy(ORG)).score_prompt(prompt) == []
    verdict = moderator.check_prompt(prompt, subject("low"))
    assert not verdict.allowed
    assert verdict.check == "prompt_classifier"
    assert set(verdict.categories) & {"self_harm", "violence"}


def test_a_minor_with_sexual_wording_is_refused_at_every_level(
    moderator: PolicyModerator,
) -> None:
    verdict = moderator.check_prompt("a schoolgirl posing seductively in lingerie", subject("low"))
    assert not verdict.allowed and "minors" in verdict.categories


def test_an_organization_can_turn_a_check_off(moderator: PolicyModerator) -> None:
    prompt = "a man slicing his own forearm with a razor blade, blood dripping into the sink"
    moderator.policies.save(ORG, {"checks": {"prompt_classifier": {"enabled": False}}}, now=1)
    assert moderator.check_prompt(prompt, subject()).allowed


def test_an_organizations_own_terms_refuse(moderator: PolicyModerator) -> None:
    moderator.policies.save(ORG, {"terms": {"violence": {"mild": ["food fight"]}}}, now=1)
    verdict = moderator.check_prompt("a food fight in a school cafeteria", subject())
    assert (verdict.allowed, verdict.check) == (False, "terms")
    assert moderator.check_prompt("a food fight in a school cafeteria", subject("low")).allowed


def test_an_image_refused_by_the_real_classifier_at_a_lowered_threshold(
    moderator: PolicyModerator,
) -> None:
    """open_nsfw scores the image; the organization's threshold decides, on either side of it."""
    image = drawing()
    (score_signal, _) = OpenNsfwCheck().score_images([image])
    score = score_signal.score
    assert 0.0 < score < 0.5  # a drawing of a circle is safe at the packaged thresholds
    assert moderator.check_images([image], "output", subject()).allowed

    def with_threshold(threshold: float) -> bool:
        changes = {"checks": {"open_nsfw": {"thresholds": {"auto": threshold, "low": threshold}}}}
        moderator.policies.save(ORG, changes, now=1)
        return moderator.check_images([image], "output", subject()).allowed

    assert not with_threshold(score * 0.99)
    assert with_threshold(min(1.0, score * 1.01))


def test_every_decision_is_logged_with_its_request_id(moderator: PolicyModerator) -> None:
    moderator.check_prompt("a lighthouse in fog", subject(request_id="req_logged"))
    moderator.check_prompt("hardcore porn", subject(request_id="req_logged"))
    moderator.check_images([drawing()], "output", subject(request_id="req_logged"))
    rows = moderator.decisions.for_request("req_logged")
    assert [(r["stage"], r["allowed"]) for r in rows] == [
        ("prompt", True),
        ("prompt", False),
        ("output", True),
    ]
    assert rows[0]["check"] == "terms,prompt_classifier"
    assert rows[1]["check"] == "terms" and rows[1]["categories"] == ["sexual"]
    assert rows[1]["score"] == 1.0 and rows[1]["detail"] == "hardcore porn"
    assert rows[2]["check"] == "open_nsfw" and 0.0 < rows[2]["score"] < 0.5
    assert all(r["organization_id"] == ORG for r in rows)


def test_a_plug_in_check_named_by_import_path(database: Database, tmp_path: Path) -> None:
    Organizations(database).bootstrap(None, None)
    policy = tmp_path / "policy.toml"
    policy.write_text(
        (Path(__file__).parents[2] / "limner/moderation/policy.default.toml").read_text()
        + '\n[checks.pineapple]\nstages = ["prompt"]\nthresholds = { auto = 0.5, low = 0.5 }\n'
    )
    moderator = build_moderator(
        database, policy, {"pineapple": "tests.moderation.plugin_check:PineappleCheck"}
    )
    try:
        verdict = moderator.check_prompt("a pizza with pineapple", subject())
        assert (verdict.allowed, verdict.check) == (False, "pineapple")
        assert moderator.check_prompt("a pizza with pineapple", subject("low")).allowed  # mild
        assert moderator.check_prompt("a pizza margherita", subject()).allowed
    finally:
        moderator.decisions.close()


def test_edit_instructions_are_not_refused() -> None:
    """Held-out edit instructions of the kind gpt-image edits take ("make it look realistic",
    the canonical one, scored self_harm 0.95 before prompts.train.edits.jsonl); none of these
    40 is in the training rows."""
    from pathlib import Path

    from limner.moderation.prompt_classifier import PromptClassifier

    classifier = PromptClassifier()
    lines = (Path(__file__).parent / "edit_instructions.txt").read_text().splitlines()
    prompts = [line for line in lines if line.strip()]
    assert len(prompts) == 40
    flagged = {
        prompt: [(s.category, round(s.score, 2)) for s in classifier.score_prompt(prompt)]
        for prompt in prompts
        if any(s.score >= 0.5 for s in classifier.score_prompt(prompt))
    }
    assert flagged == {}

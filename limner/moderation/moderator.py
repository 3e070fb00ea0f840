"""PolicyModerator: runs the checks an organization's policy enables; its thresholds decide.

Checks only score (protocol.PromptCheck / ImageCheck); this module turns scores into a verdict,
joins the minor-context rule, and records every decision. Checks are registered by name: the
built-ins below, plus any the operator names as "module:Class" in LIMNER_MODERATION_CHECKS.
"""

import importlib
import json
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from PIL import Image

from limner.moderation import image_classifiers, prompt_classifier, terms
from limner.moderation.decisions import Decision, DecisionLog
from limner.moderation.policy import Policy, PolicyBook, PolicyError, load_policy_document, worst
from limner.moderation.protocol import ImageCheck, PromptCheck, Signal, Stage, Subject, Verdict
from limner.storage.db import Database

Check = PromptCheck | ImageCheck

BUILTIN_CHECKS: dict[str, Callable[[], Check]] = {
    prompt_classifier.CHECK_NAME: prompt_classifier.PromptClassifier,
    image_classifiers.OPEN_NSFW: image_classifiers.OpenNsfwCheck,
    image_classifiers.NUDENET: image_classifiers.NudeNetCheck,
}


def import_check(path: str) -> Callable[[], Check]:
    """ "package.module:ClassName" → the class (called with no arguments to build the check)."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise PolicyError(f"moderation check {path!r}: expected 'package.module:ClassName'")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise PolicyError(f"moderation check {path!r} cannot be imported: {exc}") from exc
    if not callable(factory):
        raise PolicyError(f"moderation check {path!r} is not callable")
    return factory  # type: ignore[no-any-return]


class PolicyModerator:
    def __init__(
        self,
        policies: PolicyBook,
        base_terms: terms.TermLists,
        factories: Mapping[str, Callable[[], Check]],
        decisions: DecisionLog,
    ) -> None:
        self.policies = policies
        self.decisions = decisions
        self._base_terms = base_terms
        self._factories = dict(factories)
        self._checks: dict[str, Check] = {}
        self._term_checks: dict[str, terms.TermCheck] = {}
        self._lock = threading.Lock()

    def warm(self) -> None:
        """Build every check the operator's policy enables now, not on the first request."""
        policy = self.policies.operator_policy()
        stages: tuple[Stage, ...] = ("prompt", "input", "output")
        for stage in stages:
            for name in policy.checks_at(stage):
                self._check(name, policy)

    def check_prompt(self, prompt: str, subject: Subject) -> Verdict:
        policy = self.policies.policy(subject.organization_id)
        names = policy.checks_at("prompt")
        signals: list[Signal] = []
        term_check: terms.TermCheck | None = None
        for name in names:
            check = self._check(name, policy)
            signals.extend(check.score_prompt(prompt))  # type: ignore[union-attr]
            if isinstance(check, terms.TermCheck):
                term_check = check
        if term_check is not None:
            signals.extend(self._minor_rule(prompt, term_check, policy, signals))
        return self._decide(signals, names, "prompt", subject, policy)

    def check_images(self, images: list[Image.Image], stage: Stage, subject: Subject) -> Verdict:
        policy = self.policies.policy(subject.organization_id)
        names = policy.checks_at(stage)
        signals: list[Signal] = []
        for name in names:
            check = self._check(name, policy)
            signals.extend(check.score_images(images))  # type: ignore[union-attr]
        return self._decide(signals, names, stage, subject, policy)

    def _minor_rule(
        self, prompt: str, term_check: terms.TermCheck, policy: Policy, signals: list[Signal]
    ) -> list[Signal]:
        """A minor named alongside a sexual score refuses at every level, whatever each scores
        alone: 'a schoolgirl' and 'a woman in lingerie' are both fine, together they are not."""
        minor = term_check.minor_mention(prompt)
        if minor is None or any(
            s.category == "minors" and s.check == terms.CHECK_NAME for s in signals
        ):
            return []
        sexual = max(
            (s.score for s in signals if s.category == "sexual" and s.check != terms.CHECK_NAME),
            default=0.0,
        )
        if sexual < policy.minors_sexual_threshold:
            return []
        detail = f"{minor} + sexual score {sexual:.2f}"
        return [Signal(terms.CHECK_NAME, "minors", "severe", 1.0, detail)]

    def _decide(
        self,
        signals: list[Signal],
        names: list[str],
        stage: Stage,
        subject: Subject,
        policy: Policy,
    ) -> Verdict:
        refusing = [s for s in signals if policy.blocks(s, subject.level)]
        if refusing:
            decided = worst(refusing)
            categories = tuple(sorted({s.category for s in refusing}))
            verdict = Verdict(False, stage, decided.check, categories, decided.score)
            detail = decided.detail
        else:
            top = max(signals, key=lambda s: s.score, default=None)
            verdict = Verdict(True, stage, ",".join(names) or "off", (), top.score if top else 0.0)
            detail = f"highest: {top.check}/{top.category}" if top else ""
        self.decisions.record(
            Decision(
                request_id=subject.request_id,
                organization_id=subject.organization_id,
                stage=stage,
                level=subject.level,
                allowed=verdict.allowed,
                check=verdict.check,
                categories=verdict.categories,
                score=verdict.score,
                detail=detail,
                created_at=int(time.time()),
            )
        )
        return verdict

    def _check(self, name: str, policy: Policy) -> Check:
        if name == terms.CHECK_NAME:
            return self._term_check(policy)
        with self._lock:
            check = self._checks.get(name)
            if check is None:
                check = self._checks[name] = self._factories[name]()
            return check

    def _term_check(self, policy: Policy) -> terms.TermCheck:
        """The operator's lists plus the organization's, compiled once per distinct addition."""
        key = json.dumps(policy.terms, sort_keys=True)
        with self._lock:
            check = self._term_checks.get(key)
            if check is None:
                lists = self._base_terms.merged(terms.TermLists.from_mapping(policy.terms))
                check = self._term_checks[key] = terms.TermCheck(lists)
            return check


def build_moderator(
    database: Database,
    policy_file: Path | None = None,
    plugins: Mapping[str, str] | None = None,
    terms_file: Path | None = None,
) -> PolicyModerator:
    """The moderator a server runs: built-in checks, the operator's plug-ins, their policy."""
    factories: dict[str, Callable[[], Check]] = dict(BUILTIN_CHECKS)
    for name, path in (plugins or {}).items():
        factories[name] = import_check(path)
    policies = PolicyBook(
        database, load_policy_document(policy_file), {terms.CHECK_NAME, *factories}
    )
    base_terms = terms.TermLists.load(terms_file or terms.DEFAULT_TERMS_FILE)
    return PolicyModerator(policies, base_terms, factories, DecisionLog(database))

"""A check an operator adds by configuration ("tests.moderation.plugin_check:PineappleCheck")."""

from limner.moderation.protocol import Signal


class PineappleCheck:
    """Refuses pineapple on pizza: a policy no built-in check has."""

    name = "pineapple"

    def score_prompt(self, prompt: str) -> list[Signal]:
        text = prompt.lower()
        score = 1.0 if "pineapple" in text and "pizza" in text else 0.0
        return [Signal(self.name, "hate", "mild", score, "pineapple pizza" if score else "")]

"""Errors in operator data files (catalog, tiers, prices, policies) said in one line each."""

from pydantic import ValidationError

# Shown at most: a file with many mistakes names the first few, which is what a person fixes.
_SHOWN_ERRORS = 3


def describe_validation_error(error: ValidationError) -> str:
    """`backends.sd.guidence_scale: unknown key; models.a.rules: Input should be ...`."""
    parts = []
    for detail in error.errors()[:_SHOWN_ERRORS]:
        where = ".".join(str(part) for part in detail["loc"]) or "(top level)"
        if detail["type"] == "extra_forbidden":
            message = "unknown key (a misspelling?)"
        elif detail["type"] == "missing":
            message = "missing"
        else:
            message = detail["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    hidden = error.error_count() - _SHOWN_ERRORS
    if hidden > 0:
        parts.append(f"and {hidden} more")
    return "; ".join(parts)

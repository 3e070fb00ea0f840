"""Which models a caller may use right now: organization verification and usage tier.

One rule for both the requests themselves and `/v1/models`, so the list a key sees is exactly
what it may call. The organization's state is read with the key on every request, so a change
takes effect on the next one.
"""

from limner.accounts.keys import Caller
from limner.catalog import ModelEntry
from limner.errors import BelowUsageTier, ModelNotFound, VerificationRequired
from limner.metering.tiers import TierTable


def check_model_access(caller: Caller, entry: ModelEntry, tiers: TierTable) -> None:
    if entry.requires_verification and not caller.verified:
        raise VerificationRequired(entry.id)
    if tiers.model_limits(entry.id, caller.tier) is None:
        lowest = tiers.lowest_tier_for(entry.id)
        if lowest is None:  # no tier may use it: to the caller it does not exist
            raise ModelNotFound(entry.id)
        raise BelowUsageTier(entry.id, lowest)


def may_use(caller: Caller, entry: ModelEntry, tiers: TierTable) -> bool:
    return (not entry.requires_verification or caller.verified) and (
        tiers.model_limits(entry.id, caller.tier) is not None
    )

"""How much callers may use (rate limits, budgets) and did use (usage records, prices)."""

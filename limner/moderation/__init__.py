"""Moderation seam: checks that may block a request before or after generation."""

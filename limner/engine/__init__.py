"""torch and diffusers only: no HTTP, no accounts."""

"""Limner on Ray Serve (the `ray` extra): an ingress deployment running the whole FastAPI app,
engine deployments (one per catalog backend) wrapping today's LocalEngine, and a RayEngine
between them. docs/scale-out.md has the topology; shared/design/ray-serve.md the research.

Only deployments.py and launch.py import Ray; the ingress never imports torch.
"""

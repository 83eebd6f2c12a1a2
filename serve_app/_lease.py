"""Stepping in: a person's lease on an agent's desktop (take over, hand back)."""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations.
from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter()

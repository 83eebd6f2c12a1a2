"""The live desktop relay: a WebSocket per agent carrying its VNC stream through its actor."""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations.
from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter()

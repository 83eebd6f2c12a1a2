"""Console sign-in (cookie sessions) and tickets for the desktop relay and notebook embeds."""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations.
from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter()

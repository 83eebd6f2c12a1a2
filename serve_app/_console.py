"""The web console's static files, served at /console."""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations.
from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter()

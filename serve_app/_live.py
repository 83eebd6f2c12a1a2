"""The tenant-wide live update stream, the replay of a moment, and capacity per node."""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations.
from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter()

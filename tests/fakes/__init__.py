"""Test doubles for systems the unit tests cannot reach (a model API)."""

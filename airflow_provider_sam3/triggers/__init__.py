"""Triggers that wait on fal's queue in the triggerer."""

__all__ = []

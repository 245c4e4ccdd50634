"""Sensors that wait for fal requests submitted by another task."""

__all__ = []

"""Operators: the generic fal queue operator and one typed operator per SAM 3 endpoint."""

__all__ = []

"""All network I/O with fal, on top of fal-client: connection settings, the hook, errors and retries."""

__all__ = []

"""The batch engine: listing, validating, submitting, polling, storing and the manifest of many images.

No Airflow imports: the operator (``operators/batch.py``) renders, persists the state it is handed, and defers; the
engine does the work against a hook-like object, so it runs and is tested on its own against the emulator.
"""

__all__ = []

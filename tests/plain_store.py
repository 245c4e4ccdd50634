"""What the batch engine needs of Airflow's task state store, for tests that run the engine without Airflow."""

from __future__ import annotations

import json


class PlainStore:
    """JSON values by key, with a count of writes."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.writes = 0

    def get(self, key, default=None):
        return self.values.get(key, default)

    def set(self, key, value):
        self.values[key] = json.loads(json.dumps(value))
        self.writes += 1

    def delete(self, key):
        self.values.pop(key, None)

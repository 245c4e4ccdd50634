"""Run one DAG of lineage_dags.py with dag.test() in this process and print its task states as JSON.

    python openlineage_run.py <dag_id> '<conf as JSON>'

The OpenLineage provider reads its transport from the environment the test sets (a file), once per process: this is
why the tests run each DAG in a process of its own.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import lineage_dags  # noqa: E402 - after the path is set


def main() -> None:
    dag_id, conf = sys.argv[1], json.loads(sys.argv[2])
    run = getattr(lineage_dags, dag_id)().test(run_conf=conf)
    states = {f"{ti.task_id}[{ti.map_index}]": ti.state for ti in run.get_task_instances()}
    print("STATES " + json.dumps(states), flush=True)
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.scalars(select(AssetEvent).where(AssetEvent.source_run_id == run.run_id)).all()
        print("ASSET_EVENTS " + json.dumps([{"task": e.source_task_id, "extra": e.extra} for e in events]), flush=True)


if __name__ == "__main__":
    main()

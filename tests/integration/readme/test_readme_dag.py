"""The quick-start DAG in the README, run as written (no conf: its shipped sample photo) against the emulator."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

README = Path(__file__).resolve().parents[3] / "README.md"


def readme_dag_source() -> str:
    text = README.read_text()
    marker = text.index("<!-- newcomer-dag")
    return re.search(r"```python\n(.*?)```", text[marker:], re.S).group(1)


def test_readme_quickstart_dag_runs_as_written_and_its_task_reads_masks_and_scores(airflow_db, fal_emulator):
    module_path = Path(__file__).with_name("_readme_dag_generated.py")
    module_path.write_text(readme_dag_source())
    try:
        spec = importlib.util.spec_from_file_location("readme_dag_generated", module_path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        dag_run = module.segment_cups().test()
    finally:
        module_path.unlink()
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states == {"segment": "success", "report": "success"}
    report = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "report")
    scores = report.xcom_pull(task_ids="report")
    assert scores and all(0 < s <= 1 for s in scores)
    [record] = fal_emulator.requests()
    assert record["arguments"]["prompt"] == "cup"
    assert record["arguments"]["image_url"].startswith("data:image/jpeg")  # the shipped photo, sent inline

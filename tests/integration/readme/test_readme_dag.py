"""The quick-start DAG in the README, run as written (only its image parameter is given) against the emulator."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

README = Path(__file__).resolve().parents[3] / "README.md"


def readme_dag_source() -> str:
    text = README.read_text()
    marker = text.index("<!-- newcomer-dag")
    return re.search(r"```python\n(.*?)```", text[marker:], re.S).group(1)


def test_readme_quickstart_dag_succeeds_and_its_task_reads_masks_and_scores(airflow_db, fal_emulator, tmp_path):
    from PIL import Image, ImageDraw

    photo = tmp_path / "shoe.png"
    image = Image.new("RGB", (80, 60), (10, 10, 10))
    ImageDraw.Draw(image).ellipse([20, 15, 60, 45], fill=(200, 40, 40))
    image.save(photo)
    module_path = Path(__file__).with_name("_readme_dag_generated.py")
    module_path.write_text(readme_dag_source())
    try:
        spec = importlib.util.spec_from_file_location("readme_dag_generated", module_path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        dag_run = module.segment_shoes().test(run_conf={"image": str(photo)})
    finally:
        module_path.unlink()
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    assert states == {"segment": "success", "report": "success"}
    report = next(ti for ti in dag_run.get_task_instances() if ti.task_id == "report")
    scores = report.xcom_pull(task_ids="report")
    assert scores and all(0 < s <= 1 for s in scores)
    assert fal_emulator.counters()["submissions"]["total"] == 1

"""Batch tests: folders of small generated photos, and a dag.test() runner that also returns task logs."""

from __future__ import annotations

import io
import random

import pytest


def write_photos(folder, count: int, *, seed: int = 7) -> list:
    """``count`` small PNG photos, each a dark background with one or two bright rectangles the emulator finds."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        width, height = rng.choice([(64, 48), (80, 60), (96, 64)])
        image = Image.new("RGB", (width, height), (15, 20, 30))
        draw = ImageDraw.Draw(image)
        for _ in range(rng.choice([1, 2])):
            x0, y0 = rng.randrange(2, width // 2), rng.randrange(2, height // 2)
            draw.rectangle([x0, y0, x0 + rng.randrange(8, width // 2), y0 + rng.randrange(8, height // 2)],
                           fill=(rng.randrange(180, 255), rng.randrange(150, 255), 60))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        path = folder / f"photo_{number:04d}.png"
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


@pytest.fixture
def photos(tmp_path):
    def make(count: int, *, seed: int = 7, name: str = "in"):
        return write_photos(tmp_path / name, count, seed=seed)

    return make


@pytest.fixture
def run_batch_dag(airflow_db, fal_emulator):
    """Run a DAG with dag.test(); return (dag run state, {task_id: (state, xcom)})."""

    def run(dag, **conf):
        dag_run = dag.test(run_conf=conf or None)
        results = {ti.task_id: (ti.state, ti.xcom_pull(task_ids=ti.task_id) if ti.state == "success" else None)
                   for ti in dag_run.get_task_instances()}
        return dag_run.state, results

    return run

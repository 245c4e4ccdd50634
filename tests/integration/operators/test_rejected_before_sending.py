"""The inputs fal would reject (or silently misread) fail the task before anything is sent, naming the field."""

from __future__ import annotations

import pytest
from airflow.sdk import dag

from airflow_provider_sam3.operators.sam3 import SegmentImageOperator

BOX = {"x_min": 50, "y_min": 0, "x_max": 5, "y_max": 9}
CASES = {  # name -> (operator keyword arguments, text the error must contain)
    "max_masks_33": ({"max_masks": 33}, "max_masks: Input should be less than or equal to 32"),
    "label_2": ({"point_prompts": [{"x": 1, "y": 2, "label": 2}]}, "point_prompts[0].label: Input should be 0 or 1"),
    "x_min_above_x_max": ({"box_prompts": [BOX]}, "box_prompts[0].x_max: x_max (5) must be greater than x_min (50)"),
    "output_format_gif": ({"output_format": "gif"}, "output_format: Input should be 'jpeg', 'png' or 'webp'"),
    "unknown_field": ({"arguments": {"max_mask": 4}}, "max_mask: unknown field; did you mean 'max_masks'?"),
    "text_posing_as_png": ({"image": "{{ params.text_png }}"}, "image: "),
}


def make_dag(name: str):
    kwargs, _ = CASES[name]
    kwargs = {"image": "{{ params.image }}", "prompt": "x", **kwargs}

    @dag(dag_id=f"sam3_rejected_{name}", schedule=None, params={"image": "", "text_png": ""})
    def rejected():
        SegmentImageOperator(task_id="seg", deferrable=True, **kwargs)

    return rejected()


DAGS = {name: make_dag(name) for name in CASES}


@pytest.mark.parametrize("name", list(CASES))
def test_rejected_before_anything_is_sent(run_dag, photo, tmp_path, fal_emulator, capfd, name):
    text_png = tmp_path / "notes.png"
    text_png.write_text("these are my notes, not a picture\n")
    results = run_dag(DAGS[name], image=str(photo), text_png=str(text_png))
    out, err = capfd.readouterr()
    assert results["seg"][0] == "failed", (results, out[-3000:])
    assert CASES[name][1] in out + err
    if name == "text_posing_as_png":
        assert "jpg, jpeg, png, webp, gif, avif" in out + err
    assert fal_emulator.counters()["submissions"]["total"] == 0


def test_unknown_field_in_typed_operator_is_a_dag_definition_error():
    """A typo'd keyword on a typed operator fails when the DAG file is parsed: it never reaches a run."""
    with pytest.raises(TypeError, match="max_mask"):
        SegmentImageOperator(task_id="t", image="x.png", prompt="x", max_mask=4)

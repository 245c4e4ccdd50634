"""Mistakes a DAG file makes are reported when it is parsed, with the closest name, or at execute with a warning."""

from __future__ import annotations

import pytest

from airflow_provider_sam3.exceptions import UnknownParameterError
from airflow_provider_sam3.operators.queue import FalQueueOperator
from airflow_provider_sam3.operators.sam3 import Reconstruct3DObjectsOperator, SegmentImageOperator


@pytest.mark.parametrize(
    ("operator", "kwargs", "suggestion"),
    [
        (SegmentImageOperator, {"max_mask": 2}, "'max_mask' (did you mean 'max_masks'?)"),
        (SegmentImageOperator, {"include_score": True}, "'include_score' (did you mean 'include_scores'?)"),
        (SegmentImageOperator, {"deferable": True}, "'deferable' (did you mean 'deferrable'?)"),
        (Reconstruct3DObjectsOperator, {"export_textured_gbl": True}, "did you mean 'export_textured_glb'?"),
        (FalQueueOperator, {"endpoint": "fal-ai/sam-3/image"}, "did you mean 'endpoint_id'?"),
    ],
)
def test_a_misspelt_keyword_fails_at_parse_time_suggesting_the_closest_name(operator, kwargs, suggestion):
    with pytest.raises(UnknownParameterError) as caught:
        operator(task_id="t", **kwargs)
    assert suggestion in str(caught.value)
    assert isinstance(caught.value, TypeError)  # what Airflow itself raises for an unknown argument
    assert caught.value.field == next(iter(kwargs))


def test_a_name_far_from_every_parameter_is_named_without_a_guess():
    with pytest.raises(UnknownParameterError) as caught:
        SegmentImageOperator(task_id="t", zzzz=1)
    assert "does not take 'zzzz' (allowed:" in str(caught.value)


def test_correct_keywords_build_the_operator():
    operator = SegmentImageOperator(task_id="t", prompt="x", max_masks=2, return_multiple_masks=True, retries=2)
    assert operator.max_masks == 2 and operator.retries == 2


def test_max_masks_without_return_multiple_masks_warns_that_it_does_nothing(capfd, tmp_path):
    from PIL import Image

    path = tmp_path / "p.png"
    Image.new("RGB", (8, 8)).save(path)
    SegmentImageOperator(task_id="t", image=str(path), prompt="x", max_masks=4).prepare_request({})
    assert "max_masks=4 has no effect without return_multiple_masks=True" in "".join(capfd.readouterr())
    for kwargs in ({"max_masks": 4, "return_multiple_masks": True}, {}, {"arguments": {"max_masks": 2}}):
        operator = SegmentImageOperator(task_id="t", image=str(path), prompt="x", **kwargs)
        operator.prepare_request({})
        said = "".join(capfd.readouterr())
        assert ("max_masks=2 has no effect" in said) == ("arguments" in kwargs), kwargs


def test_partial_reports_a_misspelt_keyword_the_same_way_and_stays_airflows_otherwise():
    from airflow.sdk import dag

    with pytest.raises(UnknownParameterError, match=r"'max_mask' \(did you mean 'max_masks'\?\)"):
        SegmentImageOperator.partial(task_id="t", max_mask=2)

    @dag(schedule=None)
    def mapped():
        SegmentImageOperator.partial(task_id="t", prompt="x", max_masks=2).expand(image=["a.png", "b.png"])

    assert type(mapped().task_dict["t"]).__name__ == "MappedOperator"
    with pytest.raises(TypeError, match="only be called on Operator classes"):
        SegmentImageOperator(task_id="u").partial(task_id="v")

"""Submit a SAM 3 request in one task, wait for it with a deferrable sensor in another, read the result in a third.

What it shows: ``SegmentImageOperator(wait_for_completion=False)`` submits and returns at once with the request
reference (``endpoint_id``, ``request_id`` and fal's queue URLs) as its XCom; ``FalRequestSensor`` waits for that
request in the triggerer (``deferrable=True``: no worker slot held while fal works) and returns the same result
document the operator would have returned, with the mask PNGs copied to ``output_path``; ``read_result`` reads the
masks back (pixel areas and boxes). Split like this, the sensor's own ``timeout``, ``poke_interval`` and retries
apply to the wait, and anything between submit and wait (other tasks, other DAGs) can run meanwhile. One request
is sent: a retry of the sensor waits for the same request again. Clearing the sensor while it waits cancels that
request at fal (the trigger's ``on_kill``), so to start over clear ``submit`` and its downstream tasks together.

The sensor's document has ``image: null``: the reference it is given does not carry the input image, so mask
pixel boxes come from the size fal reports for each mask (``read_result`` takes the image from the params).

Parameters: ``image`` (a local path or an https URL; default ``$SAM3_EXAMPLE_IMAGE``, else
``/tmp/sam3-photos/000_sneaker.jpg``), ``prompt``, ``output_path`` (where mask PNGs are copied).

Run it against fal.ai (a ``fal`` connection ``fal_default``, or ``FAL_KEY``; $0.005)::

    airflow dags test sam3_submit_then_sensor -c '{"image": "/path/to/photo.jpg", "prompt": "shoe"}'

or offline against the bundled emulator, on the sample photos ``python dags_examples/_demo.py`` writes::

    rm -f /tmp/fal.env; python -m airflow_provider_sam3.testing.emulator --port 8443 --env-file /tmp/fal.env &
    until [ -s /tmp/fal.env ]; do sleep 0.2; done; set -a; . /tmp/fal.env; set +a
    export SAM3_EXAMPLE_IMAGE=$PWD/out/demo/inputs/000_sneaker.jpg
    airflow dags test sam3_submit_then_sensor

Tested by ``tests/integration/examples/test_submit_then_sensor_example.py``.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag, task

from airflow_provider_sam3.operators.sam3 import SegmentImageOperator
from airflow_provider_sam3.sensors.fal import FalRequestSensor


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "image": os.environ.get("SAM3_EXAMPLE_IMAGE", "/tmp/sam3-photos/000_sneaker.jpg"),
        "prompt": "product",
        "output_path": "file:///tmp/sam3-submit-then-sensor",
    },
    tags=["sam3", "example"],
)
def sam3_submit_then_sensor():
    submit = SegmentImageOperator(
        task_id="submit",
        image="{{ params.image }}",
        prompt="{{ params.prompt }}",
        apply_mask=False,
        return_multiple_masks=True,
        max_masks=4,
        include_scores=True,
        include_boxes=True,
        wait_for_completion=False,  # returns the request reference, not the result
    )

    wait = FalRequestSensor(
        task_id="wait",
        reference=submit.output,
        output_path="{{ params.output_path }}",  # masks land in <output_path>/<request_id>/
        deferrable=True,
        poke_interval=1,  # the first status poll; the trigger backs off to 30 s
        timeout=60 * 60,  # give up (and fail) an hour after the sensor started waiting
        retries=2,  # a retry waits for the same request again; nothing is resubmitted
    )

    @task
    def read_result(document: dict, reference: dict, params: dict | None = None) -> dict:
        """Masks as arrays (read from the copies the sensor wrote): one line per mask with area and pixel box."""
        from airflow.sdk import ObjectStoragePath

        from airflow_provider_sam3.models.results import SegmentationResult

        result = SegmentationResult.from_xcom(document)
        if result.request_id != reference["request_id"]:
            raise ValueError(f"the sensor returned request {result.request_id}, submit sent {reference['request_id']}")
        rows = result.to_rows(
            label=params["prompt"], with_area=True, read=lambda url: ObjectStoragePath(url).read_bytes()
        )
        for row in rows:
            row["image"] = params["image"]  # the sensor's document does not know the input image
        return {
            "request_id": result.request_id,
            "wait_seconds": result.timings.wait_seconds,
            "cost_usd": result.cost_usd,
            "masks": [
                {
                    key: row[key]
                    for key in ("mask_index", "score", "x_min", "y_min", "x_max", "y_max", "area", "mask_url")
                }
                for row in rows
            ],
            "image": params["image"],
        }

    read_result(wait.output, submit.output)


sam3_submit_then_sensor()

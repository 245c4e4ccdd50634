"""Sam3MergeManifestsOperator: one manifest for a batch that ran as shards (``Sam3BatchOperator`` mapped over
``shard_index``), joined row by row in shard order, and a summary of the whole batch in XCom."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator

from airflow_provider_sam3.exceptions import FalRequestError, InputValidationError
from airflow_provider_sam3.operators.kept_result import keeps_result

__all__ = ["MERGED_SUMMARY_KIND", "Sam3MergeManifestsOperator"]

MERGED_SUMMARY_KIND = "sam3.batch.merged"


class Sam3MergeManifestsOperator(BaseOperator):
    """Join the manifests of a sharded batch into ``<output_path>/<dag_id>/<run_id>/<task_id>/manifest.jsonl``.

    :param summaries: the shard tasks' summaries (templated), e.g. ``segment.output`` of
        ``Sam3BatchOperator.partial(..., shard_count=4).expand(shard_index=[0, 1, 2, 3])``; their order (the map
        index) is the order of the merged rows.
    :param output_path: where the merged manifest goes (templated; usually the shards' ``output_path``).

    Each merged row keeps its shard's fields, plus ``shard`` and ``shard_index``; ``index`` is its position in the
    merged manifest. A shard without a summary (it failed) fails this task, naming the shard: its own manifest
    (in its folder) lists why, and clearing it resumes it without paying again.
    """

    template_fields = ("summaries", "output_path")
    ui_color = "#dfe9ff"

    def __init__(self, *, summaries: Any, output_path: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.summaries = summaries
        self.output_path = output_path

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        from airflow_provider_sam3.operators.lineage import task_lineage

        return task_lineage(self)  # its inputs are the shard manifests its result names

    get_openlineage_facets_on_failure = get_openlineage_facets_on_complete

    @keeps_result
    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_provider_sam3.batch.manifest import MANIFEST_FILE, merge_manifests
        from airflow_provider_sam3.operators.batch_checks import task_folder
        from airflow_provider_sam3.storage.outputs import resolve_output_path

        summaries = list(self.summaries or [])
        if not summaries:
            raise InputValidationError("summaries", "is empty: give the shard tasks' output (e.g. segment.output)")
        missing = [shard for shard, summary in enumerate(summaries) if not isinstance(summary, dict)]
        if missing:
            raise FalRequestError(
                f"shards {missing} of {len(summaries)} left no summary (they failed or were skipped); their own "
                "manifests say why. Clear them (nothing paid is paid again), then clear this task"
            )
        manifests = [resolve_output_path(summary["manifest"]) for summary in summaries]
        folder = task_folder(self, self.output_path, context)
        destination = folder / MANIFEST_FILE
        counts = merge_manifests(manifests, destination)
        self.log.info(
            "Merged %d shard manifests: %d images, %d succeeded, %d without a result, %d submissions; manifest: %s",
            len(manifests),
            counts["images"],
            counts["succeeded"],
            counts["failed"],
            counts["submissions"],
            destination,
        )
        return {
            "schema_version": 1,
            "kind": MERGED_SUMMARY_KIND,
            "shards": len(manifests),
            **counts,
            "billed_requests": sum(int(summary.get("billed_requests") or 0) for summary in summaries),
            "shard_manifests": [str(manifest) for manifest in manifests],
            "manifest": str(destination),
        }

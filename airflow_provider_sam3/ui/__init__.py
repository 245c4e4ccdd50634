"""The SAM 3 tab on every task instance of the Airflow UI: an Airflow plugin (``ui.plugin``) whose FastAPI app,
mounted by the API server, renders what a SAM 3 task stored (masks, scores, a batch's gallery and manifest)."""

__all__: list[str] = []

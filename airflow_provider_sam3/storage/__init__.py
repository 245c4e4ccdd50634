"""Writing results to the user's storage (local paths and Airflow object storage), confined to ``output_path``."""

__all__ = []

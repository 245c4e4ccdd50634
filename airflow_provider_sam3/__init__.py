"""Apache Airflow provider for Meta's SAM 3 family on fal.ai.

Importing this package is cheap on purpose (DAG files import it constantly): heavy libraries are imported
lazily by the modules that need them.
"""

from __future__ import annotations

__all__ = ["DISTRIBUTION", "get_provider_info"]

__version__ = "0.1.0"

DISTRIBUTION = "airflow-provider-sam3"


def get_provider_info() -> dict:
    """What Airflow's providers manager reads through the ``apache_airflow_provider`` entry point."""
    return {
        "package-name": DISTRIBUTION,
        "name": "SAM 3 on fal.ai",
        "description": "Segment images and videos with Meta's SAM 3 family on fal.ai: deferrable operators, "
        "triggers, sensors, XCom result documents and an offline fal emulator.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "fal SAM 3",
                "external-doc-url": "https://fal.ai/models/fal-ai/sam-3/image",
                "tags": ["ml"],
            }
        ],
        "hooks": [
            {
                "integration-name": "fal SAM 3",
                "python-modules": [
                    "airflow_provider_sam3.hooks.async_calls",
                    "airflow_provider_sam3.hooks.connection",
                    "airflow_provider_sam3.hooks.downloads",
                    "airflow_provider_sam3.hooks.fal",
                    "airflow_provider_sam3.hooks.sync_calls",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": "fal SAM 3",
                "python-modules": [
                    "airflow_provider_sam3.operators.batch",
                    "airflow_provider_sam3.operators.merge",
                    "airflow_provider_sam3.operators.queue",
                    "airflow_provider_sam3.operators.queue_options",
                    "airflow_provider_sam3.operators.sam3",
                    "airflow_provider_sam3.operators.sam3_base",
                ],
            }
        ],
        "sensors": [{"integration-name": "fal SAM 3", "python-modules": ["airflow_provider_sam3.sensors.fal"]}],
        "triggers": [
            {
                "integration-name": "fal SAM 3",
                "python-modules": [
                    "airflow_provider_sam3.triggers.base",
                    "airflow_provider_sam3.triggers.batch",
                    "airflow_provider_sam3.triggers.fal",
                ],
            }
        ],
        "extra-links": [
            "airflow_provider_sam3.links.FalRequestLink",
            "airflow_provider_sam3.links.Sam3TabLink",
            "airflow_provider_sam3.links.BatchManifestLink",
        ],
        "connection-types": [
            {
                "connection-type": "fal",
                "hook-class-name": "airflow_provider_sam3.hooks.fal.FalHook",
                "hook-name": "fal.ai",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login", "extra"],
                    "relabeling": {"password": "API key", "host": "Queue host (optional)"},
                    "placeholders": {
                        "password": "the key from fal.ai/dashboard/keys (KEY_ID:KEY_SECRET)",
                        "host": "queue.fal.run",
                    },
                },
                "conn-fields": {
                    "request_timeout": {
                        "label": "Request timeout (s)",
                        "description": "Timeout of each HTTP call to fal's queue (submit, status, result, cancel).",
                        "schema": {"type": ["number", "null"], "minimum": 1, "default": 120},
                    },
                    "poll_interval": {
                        "label": "First poll interval (s)",
                        "description": "How long to wait before the first status check; it backs off from there.",
                        "schema": {"type": ["number", "null"], "minimum": 0.2, "default": 2},
                    },
                    "max_poll_interval": {
                        "label": "Longest poll interval (s)",
                        "description": "Upper bound of the backed-off interval between status checks.",
                        "schema": {"type": ["number", "null"], "minimum": 0.2, "default": 30},
                    },
                    "max_output_bytes": {
                        "label": "Largest output file (bytes)",
                        "description": "Output files larger than this are refused, not fetched (default 512 MiB).",
                        "schema": {"type": ["integer", "null"], "minimum": 1, "default": 536870912},
                    },
                    "media_hosts": {
                        "label": "Extra media hosts",
                        "description": "Comma-separated host[:port] list outputs may also be fetched from when they "
                        "resolve to a private address (the queue host always may).",
                        "schema": {"type": ["string", "null"]},
                    },
                },
            }
        ],
    }

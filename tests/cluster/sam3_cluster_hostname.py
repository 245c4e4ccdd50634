"""``[core] hostname_callable`` for the cluster suite: every component of the one-host cluster names itself.

All processes of the cluster run on one machine, so ``socket.getfqdn()`` would give every Celery worker and every
triggerer the same name. Each component is started with ``SAM3_CLUSTER_HOSTNAME`` (``worker-1``, ``triggerer-2``...),
and Airflow records that name where it records a host: ``task_instance.hostname`` (the worker that ran a try) and
``job.hostname`` (which triggerer a ``trigger.triggerer_id`` belongs to). Imported by Airflow from ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("SAM3_CLUSTER_HOSTNAME") or socket.getfqdn()

"""Run the fal emulator in the foreground.

    python -m airflow_provider_sam3.testing.emulator --port 0 --api-key KEY --env-file emulator.env

Once it accepts connections it writes ``FAL_QUEUE_RUN_HOST``, ``SSL_CERT_FILE`` and ``FAL_KEY`` lines to the env
file (``set -a; . emulator.env`` points fal_client at it). SIGTERM or SIGINT stops it with exit status 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

from airflow_provider_sam3.testing.emulator.config import (
    DEFAULT_API_KEY,
    FAULT_KINDS,
    FAULT_TARGETS,
    EmulatorConfig,
    FaultRule,
)
from airflow_provider_sam3.testing.emulator.runner import FalEmulator

ADMIN_HELP = f"""admin endpoints (no key needed), under https://127.0.0.1:PORT:
  GET  /_emulator/counters   what the emulator saw: submissions (by endpoint), status/result/stream calls, cancels,
                             faults injected, completed, in progress, queue length, webhooks, bytes held
  GET  /_emulator/requests   every request: id, endpoint, state, arguments (long strings cut), priority, runner
                             hint, webhook, start timeout, the X-Fal-* headers of its submit, fault, times
  GET  /_emulator/config     the knobs now (the key shown as ***)
  POST /_emulator/config     change knobs at run time, JSON: {{"service_time_s": 2, "concurrency": 4, ...}}
  POST /_emulator/faults     add a fault rule, JSON as --fault
  POST /_emulator/reset      forget requests, files, counters and faults

fault kinds: {", ".join(FAULT_KINDS)};
targets: {", ".join(FAULT_TARGETS)}; give exactly one of rate, first or every.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_sam3.testing.emulator",
        description="Run the fal emulator in the foreground.",
        epilog=ADMIN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: pick a free one)")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="the key clients must send")
    parser.add_argument("--env-file", type=Path, help="write FAL_QUEUE_RUN_HOST, SSL_CERT_FILE and FAL_KEY here")
    parser.add_argument("--service-time", type=float, help="seconds each request spends IN_PROGRESS")
    parser.add_argument("--concurrency", type=int, help="requests IN_PROGRESS at once")
    parser.add_argument("--service-jitter", type=float, help="up to this many seconds added to each service time")
    parser.add_argument("--in-progress-logs", type=int, help="log lines each request writes while IN_PROGRESS")
    parser.add_argument("--result-retention", type=float, help="seconds a result stays fetchable after completion")
    parser.add_argument("--media-ttl", type=float, help="seconds generated files stay downloadable")
    parser.add_argument(
        "--media-budget-mb", type=float, help="MiB of generated files kept; beyond it the oldest expire (default 128)"
    )
    parser.add_argument(
        "--result-budget-mb", type=float, help="MiB of result bodies kept; beyond it the oldest expire (default 32)"
    )
    parser.add_argument("--cert-dir", help="where to write cert.pem and key.pem (default: a temporary directory)")
    parser.add_argument("--exhausted-key", action="append", default=[], help="a key whose account is locked (403)")
    parser.add_argument("--seed", type=int, help="seed of the fault and jitter RNG")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        type=FaultRule.model_validate_json,
        help='a fault rule as JSON, e.g. \'{"kind": "nginx_502", "target": "status", "first": 2}\'',
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


def write_env_file(path: Path, env: dict[str, str]) -> None:
    """Write ``env`` as shell-exportable lines, atomically (readers never see half a file)."""
    text = "".join(f"{name}={shlex.quote(value)}\n" for name, value in env.items())
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


MMAP_THRESHOLD_BYTES = 1 << 20


def _keep_large_buffers_mapped() -> None:
    """glibc raises its mmap threshold after the first large free, so later multi-megabyte buffers (request bodies,
    decoded photos, masks) come from the heap, which fragments and keeps the process's RSS creeping up. A fixed
    threshold keeps buffers above 1 MiB in their own mappings, returned to the system when freed. glibc only; a
    no-op elsewhere."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, MMAP_THRESHOLD_BYTES)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _keep_large_buffers_mapped()
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    knobs = {
        "service_time_s": args.service_time,
        "concurrency": args.concurrency,
        "media_ttl_s": args.media_ttl,
        "seed": args.seed,
        "service_jitter_s": args.service_jitter,
        "in_progress_logs": args.in_progress_logs,
        "result_retention_s": args.result_retention,
        "media_budget_bytes": None if args.media_budget_mb is None else int(args.media_budget_mb * 2**20),
        "result_budget_bytes": None if args.result_budget_mb is None else int(args.result_budget_mb * 2**20),
    }
    config = EmulatorConfig(
        port=args.port,
        api_key=args.api_key,
        cert_dir=args.cert_dir,
        exhausted_keys=args.exhausted_key,
        faults=args.fault,
        **{k: v for k, v in knobs.items() if v is not None},
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    emulator = FalEmulator(config).start()
    if args.env_file:
        write_env_file(args.env_file.resolve(), emulator.env)
    logging.getLogger("airflow_provider_sam3.testing.emulator").info("fal emulator listening on %s", emulator.base_url)
    while not stop.wait(0.2):
        pass
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

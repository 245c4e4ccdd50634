"""Keep this machine busy the way a shared CI host is: two CPU hogs and an Airflow of its own doing real work.

Starts two ``yes > /dev/null`` and an ``airflow standalone`` (its own home, ports and emulator) that runs a batch of
100 photos and 10 mapped single-image tasks over and over, until stopped (SIGTERM / Ctrl-C) or ``--minutes`` pass.
Run it beside the suite to check that the suite does not depend on an idle machine::

    .venv/bin/python bench/busy_machine.py --minutes 240 &     # then, in a fresh clone: CI=true bash .ci/run
    kill %1

It prints one line per finished load run (its state and duration) so the load is known to have been real.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "deployment"), str(ROOT / "tests")]

LOAD_DAG = """
import pendulum
from airflow.sdk import dag, task

from airflow_provider_sam3.operators.batch import Sam3BatchOperator
from airflow_provider_sam3.operators.sam3 import SegmentImageOperator


@dag(dag_id="busy_machine_load", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False)
def load():
    Sam3BatchOperator(
        task_id="batch",
        images="{{ dag_run.conf['folder'] }}",
        output_path="{{ dag_run.conf['out'] }}",
        arguments={"prompt": "box"},
        deferrable=True,
        retries=2,
    )

    @task
    def photos(**context):
        return context["dag_run"].conf["singles"]

    SegmentImageOperator.partial(task_id="single", prompt="box", deferrable=True, retries=2).expand(
        image=photos()
    )


load()
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=240.0, help="stop after this long (default 240)")
    parser.add_argument("--hogs", type=int, default=2, help="`yes > /dev/null` processes (default 2)")
    args = parser.parse_args()

    from harness import AirflowDeployment
    from photos import write_photos

    from airflow_provider_sam3.testing import EmulatorConfig, FalEmulator

    stop = {"now": False}

    def on_sigterm(*_: object) -> None:  # stop now, mid-run too: the finally block takes the load's Airflow down
        stop["now"] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    hogs = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(args.hogs)]
    work = Path(tempfile.mkdtemp(prefix="busy-machine-"))
    emulator = FalEmulator(EmulatorConfig(service_time_s=0.3, concurrency=8, cert_dir=str(work / "cert")))
    emulator.start()
    deployment = AirflowDeployment(extra_env=emulator.env, base_dir=work)
    try:
        deployment.start()
        folder = work / "photos"
        paths = write_photos(folder, 100, seed=5)
        deployment.write_dag("busy_machine_load.py", LOAD_DAG)
        deployment.wait_for_dag("busy_machine_load", timeout=120)
        print(f"busy machine: {args.hogs} CPU hogs and airflow standalone in {work}", flush=True)
        ends_at = time.monotonic() + args.minutes * 60
        number = 0
        while not stop["now"] and time.monotonic() < ends_at:
            number += 1
            started = time.monotonic()
            singles = [str(p) for p in paths[:10]]
            conf = {"folder": str(folder), "out": str(work / "out" / str(number)), "singles": singles}
            run_id = deployment.trigger("busy_machine_load", conf=conf)
            state = deployment.wait_for_run("busy_machine_load", run_id, timeout=900)
            print(f"load run {number}: {state} in {time.monotonic() - started:.0f} s", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        deployment.stop()
        emulator.stop()
        for hog in hogs:
            hog.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())

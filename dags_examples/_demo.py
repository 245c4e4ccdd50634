"""The README's first command: the product-photo example DAG over real photos, offline, against the emulator.

    python dags_examples/_demo.py [--real] [--images N] [--out DIR]

The photos are the public-domain and CC0 ones scikit-image ships (``airflow_provider_sam3.samples.demo_photos``,
the ``demo`` extra), each with its own prompt and box in a ``prompts.json`` beside it; ``--images N`` uses N
generated flat shapes instead (what the tests use).

Starts the bundled fal emulator exactly as a user would (its CLI and env file), migrates a private Airflow DB,
runs ``sam3_product_photos`` (one ``Sam3BatchOperator`` task for all images) with ``dag.test()``, prints a summary
and where to look, and stops what it started.
``--real`` skips the emulator and sends the same DAG to fal.ai with ``FAL_KEY`` (costs $0.005 per image).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PRODUCTS = [  # (name, background, shape, colour, box): simple "product photos" a classical segmenter can read
    ("sneaker", (235, 235, 230), "ellipse", (200, 40, 40), (60, 110, 260, 200)),
    ("mug", (225, 232, 240), "rectangle", (30, 90, 170), (110, 70, 210, 230)),
    ("ball", (240, 236, 220), "ellipse", (240, 150, 20), (100, 80, 220, 200)),
    ("box", (228, 228, 228), "rectangle", (60, 140, 60), (70, 90, 250, 210)),
    ("lamp", (236, 230, 222), "ellipse", (120, 50, 150), (130, 40, 190, 240)),
    ("vase", (230, 236, 236), "rectangle", (180, 120, 60), (140, 60, 190, 250)),
]


def make_sample_images(folder: Path, count: int) -> list[Path]:
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        name, background, shape, colour, box = PRODUCTS[index % len(PRODUCTS)]
        image = Image.new("RGB", (320, 280), background)
        draw = ImageDraw.Draw(image)
        getattr(draw, shape)(box, fill=colour)
        path = folder / f"{index:03d}_{name}.jpg"
        image.save(path, quality=92)
        paths.append(path)
    return paths


def copy_demo_photos(folder: Path) -> list[Path]:
    """The demo's real photos in ``folder`` (``<name>.<ext>``) and their ``prompts.json`` (prompt and box each)."""
    from airflow_provider_sam3.samples.demo_photos import DEMO_PHOTOS

    folder.mkdir(parents=True, exist_ok=True)
    paths, arguments = [], {}
    for photo in DEMO_PHOTOS:
        path = folder / f"{photo.name}{Path(photo.file).suffix}"
        shutil.copyfile(photo.path(), path)
        x_min, y_min, x_max, y_max = photo.box
        box = {"x_min": x_min, "y_min": y_min, "x_max": x_max, "y_max": y_max}
        arguments[path.name] = {"prompt": photo.prompt, "box_prompts": [box]}
        paths.append(path)
    (folder / "prompts.json").write_text(json.dumps(arguments, indent=2) + "\n")
    return sorted(paths)


def start_emulator(workdir: Path) -> tuple[subprocess.Popen, dict[str, str]]:
    env_file = workdir / "fal-emulator.env"
    env_file.unlink(missing_ok=True)
    log = open(workdir / "fal-emulator.log", "w")  # noqa: SIM115 - lives as long as the emulator
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_sam3.testing.emulator",
            "--port",
            "0",
            "--api-key",
            "demo-key",
            "--env-file",
            str(env_file),
            "--service-time",
            "0.3",
            "--concurrency",
            "4",
            "--cert-dir",
            str(workdir),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.time() + 30
    while not env_file.exists():
        if process.poll() is not None or time.time() > deadline:
            raise SystemExit(f"the emulator did not start; see {workdir / 'fal-emulator.log'}")
        time.sleep(0.1)
    values = dict(line.split("=", 1) for line in env_file.read_text().split() if "=" in line)
    return process, values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", action="store_true", help="use fal.ai with FAL_KEY instead of the emulator")
    parser.add_argument("--images", type=int, help="generate this many flat-shape images instead of the real photos")
    parser.add_argument("--out", type=Path, default=REPO / "out" / "demo", help="output folder (default out/demo)")
    args = parser.parse_args()
    out = args.out.resolve()
    if args.real and not os.environ.get("FAL_KEY"):
        raise SystemExit("--real needs FAL_KEY set to your fal.ai key")

    started = time.time()
    for owned in ("inputs", "output"):  # a fresh demo each time (the example's result cache is under output/ too)
        shutil.rmtree(out / owned, ignore_errors=True)
    inputs = make_sample_images(out / "inputs", args.images) if args.images else copy_demo_photos(out / "inputs")
    emulator = None
    if not args.real:
        emulator, fal_env = start_emulator(out)
        os.environ.update(fal_env)
    try:
        os.environ.update(
            {
                "AIRFLOW_HOME": str(out / "airflow-home"),
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags_examples"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            }
        )
        subprocess.run(
            [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        sys.path.insert(0, str(REPO / "dags_examples"))
        import sam3_product_photos  # noqa: PLC0415 - needs AIRFLOW_HOME set first

        dag = sam3_product_photos.sam3_product_photos()
        run = dag.test(
            run_conf={
                "input_folder": str(out / "inputs"),
                "output_path": str(out / "output"),
                "prompt": "product",  # the real photos have their own, in prompts.json
                "max_cost_usd": 5.0,
            }
        )
        states = {}
        for ti in run.get_task_instances():
            states.setdefault(ti.state, []).append(f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0 else ti.task_id)
        render = next(ti for ti in run.get_task_instances() if ti.task_id == "render")
        summary = render.xcom_pull(task_ids="render") or {}
    finally:
        if emulator is not None:
            counters = _emulator_counters(fal_env)
            emulator.send_signal(signal.SIGTERM)
            emulator.wait(timeout=20)

    failures = sum(len(v) for k, v in states.items() if k != "success")
    print()
    print("SAM 3 demo", "against fal.ai" if args.real else "against the local fal emulator (offline, nothing billed)")
    made = "generated" if args.images else "real photos, with their prompts.json,"
    print(f"  images:        {len(inputs)} ({made} in {out / 'inputs'})")
    print(f"  masks:         {summary.get('masks', 0)} (one metadata row each)")
    if emulator is not None:
        print("                 offline, masks come from the emulator's classical stand-in segmenter, not SAM 3")
    failed_images = summary.get("failed") or []
    failed_tasks = {k: v for k, v in states.items() if k != "success"}
    print(f"  failed images: {len(failed_images)}{' ' + json.dumps(failed_images) if failed_images else ''}")
    print(f"  failed tasks:  {failures}{' ' + json.dumps(failed_tasks) if failures else ''}")
    print(f"  wall time:     {time.time() - started:.1f} s")
    print(f"  fal would charge: ${summary.get('cost_usd', 0):.3f}")
    print(f"  result cache:  {summary.get('cache_hits', 0)} images answered from it (nothing sent for them)")
    if emulator is not None:
        print(
            f"  emulator:      {counters.get('submissions', {}).get('total')} submissions, "
            f"{counters.get('status_calls')} status calls"
        )
    print("Where to look:")
    sheet = summary.get("contact_sheet")
    if sheet:
        shutil.copyfile(_local(sheet), out / "contact_sheet.png")
    print(f"  contact sheet: {out / 'contact_sheet.png'} (the run's overlays at a glance; the README's picture)")
    print(f"  overlays:      {out / 'output' / 'overlays'}")
    print(f"  cutouts:       {out / 'output' / 'cutouts'}")
    print(f"  masks:         {out / 'output' / 'masks'}")
    print(f"  metadata:      {_local(summary.get('metadata', '?'))} (and metadata.jsonl beside it)")
    print(f"  manifest:      {_local(summary.get('manifest', '?'))} (every image, its request and outcome)")
    return 0 if run.state == "success" and failures == 0 else 1


def _local(location: str) -> str:
    return location.removeprefix("file://")


def _emulator_counters(fal_env: dict[str, str]) -> dict:
    import httpx

    try:
        return httpx.get(
            f"https://{fal_env['FAL_QUEUE_RUN_HOST']}/_emulator/counters", verify=fal_env["SSL_CERT_FILE"], timeout=5
        ).json()
    except httpx.HTTPError:
        return {}


if __name__ == "__main__":
    raise SystemExit(main())

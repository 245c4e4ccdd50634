"""The CLI end to end: a foreground emulator, and a separate stock-fal_client process that knows only the env file."""

from __future__ import annotations

import io
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from emulator_helpers import png_data_uri, squares_image, trust
from PIL import Image

SEEDS = Path(__file__).resolve().parents[2] / "fixtures" / "sam3_image_seed_examples.json"
CLIENT_SCRIPT = """
import json, sys
import fal_client
logs = []
def on_update(status):
    logs.extend(getattr(status, "logs", None) or [])
result = fal_client.subscribe("fal-ai/sam-3/image", arguments=json.load(sys.stdin), with_logs=True,
                              on_queue_update=on_update)
print(json.dumps({"result": result, "logs": logs}))
"""


def _read_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        name, _, value = line.partition("=")
        env[name] = shlex.split(value)[0]
    return env


def test_cli_serves_a_separate_stock_fal_client_and_stops_on_sigterm(tmp_path):
    env_file = tmp_path / "emulator.env"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_sam3.testing.emulator",
            "--port",
            "0",
            "--api-key",
            "cli-key",
            "--env-file",
            str(env_file),
            "--service-time",
            "0.4",
            "--in-progress-logs",
            "2",
            "--cert-dir",
            str(tmp_path / "certs"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(600):  # a hang guard (30 s at most), not a timing claim
            if env_file.exists():
                break
            assert server.poll() is None, server.communicate()[1]
            time.sleep(0.05)
        assert env_file.exists(), "the emulator did not write its env file"
        lines = env_file.read_text().splitlines()
        assert [line.split("=", 1)[0] for line in lines] == ["FAL_QUEUE_RUN_HOST", "SSL_CERT_FILE", "FAL_KEY"]
        emulator_env = _read_env(env_file)
        assert emulator_env["FAL_QUEUE_RUN_HOST"].startswith("127.0.0.1:") and emulator_env["FAL_KEY"] == "cli-key"
        assert Path(emulator_env["SSL_CERT_FILE"]).is_absolute()

        width, height = 200, 150
        arguments = json.loads(SEEDS.read_text())["full_request"]
        arguments["image_url"] = png_data_uri(squares_image(width, height, [(50, 40, 150, 110)]))
        client_env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **emulator_env}
        done = subprocess.run(
            [sys.executable, "-c", CLIENT_SCRIPT],
            input=json.dumps(arguments),
            env=client_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        output = json.loads(done.stdout)
        masks = output["result"]["masks"]
        assert masks and {entry["message"].split(": ", 1)[1] for entry in output["logs"]} == {
            "step 1 of 2",
            "step 2 of 2",
        }
        with httpx.Client(verify=trust(emulator_env["SSL_CERT_FILE"])) as http:
            for mask in masks:
                response = http.get(mask["url"])
                assert response.status_code == 200 and response.headers["content-type"] == "image/png"
                picture = Image.open(io.BytesIO(response.content))
                assert picture.format == "PNG" and picture.size == (width, height)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            _, stderr = server.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    assert server.returncode == 0, stderr
    assert "POST /fal-ai/sam-3/image -> 200" in stderr
    assert "cli-key" not in stderr


def test_cli_help_documents_the_admin_endpoints_and_every_fault_kind():
    from airflow_provider_sam3.testing.emulator.__main__ import build_parser
    from airflow_provider_sam3.testing.emulator.config import FAULT_KINDS

    text = build_parser().format_help()
    for route in (
        "/_emulator/counters",
        "/_emulator/requests",
        "/_emulator/config",
        "/_emulator/faults",
        "/_emulator/reset",
    ):
        assert route in text
    assert all(kind in text for kind in FAULT_KINDS)
    assert "--media-budget-mb" in text and "--result-budget-mb" in text

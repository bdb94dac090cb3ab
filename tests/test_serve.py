"""``ssd serve`` as a user starts it: a real uvicorn process on a free loopback port, 200 requests from 8
concurrent clients all answered with the Predictor's detections, batches that grouped them, the key from the
environment."""

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2
import pytest
import torch

from process_helpers import free_port
from serve_helpers import tiny_checkpoint, write_client_images
from ssd.engine.predictor import Predictor

START_TIMEOUT_S = 90
CLIENTS, REQUESTS_EACH = 8, 25


def wait_until_up(process: subprocess.Popen, url: str, headers: dict) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"ssd serve exited with {process.returncode}: {process.stdout.read()}")
        try:
            if httpx2.get(f"{url}/v1/health", headers=headers, timeout=2).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"ssd serve did not answer within {START_TIMEOUT_S} s")


def test_eight_clients_all_answered_in_grouped_batches(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path)
    images = list(write_client_images(tmp_path / "images").values())
    expected = {path.name: Predictor(checkpoint)(path)[0] for path in images}
    port = free_port()
    command = [sys.executable, "-m", "ssd", "serve", "--weights", str(checkpoint), "--port", str(port),
               "--max-batch", "8", "--max-wait-ms", "20"]  # fmt: skip
    environment = {**os.environ, "SSD_API_KEY": "from-the-environment", "OMP_NUM_THREADS": "2"}
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url, key = f"http://127.0.0.1:{port}", {"Authorization": "Bearer from-the-environment"}
    try:
        wait_until_up(process, url, key)
        assert httpx2.get(f"{url}/v1/health", timeout=5).status_code == 401

        def client(k: int) -> list[tuple[str, int, dict]]:
            with httpx2.Client(base_url=url, headers=key, timeout=120) as session:
                answers = []
                for j in range(REQUESTS_EACH):
                    path = images[(k + j) % len(images)]
                    response = session.post("/v1/detect", content=path.read_bytes())
                    answers.append((path.name, response.status_code, response.json()))
                return answers

        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = [a for part in pool.map(client, range(CLIENTS)) for a in part]
        stats = httpx2.get(f"{url}/v1/stats", headers=key, timeout=5).json()
    finally:
        process.terminate()
        process.wait(timeout=30)

    assert len(answers) == CLIENTS * REQUESTS_EACH and all(status == 200 for _, status, _ in answers)
    for name, _, body in answers:
        want = expected[name]
        assert [d["label"] for d in body["detections"]] == want["labels"].tolist()
        scores = torch.tensor([d["score"] for d in body["detections"]])
        torch.testing.assert_close(scores, want["scores"], atol=1e-4, rtol=0)  # batched: float rounding only
    assert stats["requests"] == CLIENTS * REQUESTS_EACH
    sizes = {int(size): count for size, count in stats["batch_sizes"].items()}
    assert sum(size * count for size, count in sizes.items()) == stats["requests"]
    assert max(sizes) > 1 and stats["batches"] < stats["requests"]  # requests were grouped

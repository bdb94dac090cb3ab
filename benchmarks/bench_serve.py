"""``ssd serve`` under load: latency (p50, p99) and throughput at 1, 4 and 16 concurrent clients, for the demo
model and SSD300, with dynamic batching on and off, on the PyTorch and ONNX Runtime backends; the server's own
overhead over calling ``ssd.Predictor`` on the same image (interleaved, one client); and the server's resident
memory after 100 and after 1,000 requests.

Each configuration runs a fresh ``ssd serve`` process on 127.0.0.1; the clients are threads of this process.
Random weights: the work per image does not depend on them. Prints markdown tables.

    python benchmarks/bench_serve.py --out serve.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import torch
from torchvision.io import encode_jpeg

import ssd
from ssd.build import build_model
from ssd.config import load_run_config
from ssd.engine.predictor import Predictor
from ssd.export.onnx import export_onnx

MODELS = {"shapes (demo)": 96, "ssd300_vgg16": 24}  # model: requests per concurrency level
CONCURRENCY = (1, 4, 16)
START_TIMEOUT_S = 120
PAUSE_S = 0.1  # idle cores before each timed call: the other side's threads may still spin


def write_models(folder: Path) -> dict[str, dict[str, Path]]:
    """``{model: {"torch": checkpoint, "onnxruntime": .onnx}}`` with random weights."""
    torch.manual_seed(0)
    run = load_run_config("shapes")
    built = {"shapes (demo)": build_model(run.preset, 7, **run.model), "ssd300_vgg16": build_model("ssd300_vgg16", 21)}
    paths = {}
    for name, model in built.items():
        stem = folder / name.split()[0]
        ssd.save(model, stem.with_suffix(".pt"))
        onnx = export_onnx(model.eval(), stem.with_suffix(".onnx"), verify=False)
        paths[name] = {"torch": stem.with_suffix(".pt"), "onnxruntime": Path(onnx)}
    return paths


def photo_jpeg(seed: int = 0) -> bytes:
    """A 640x480 JPEG of smooth random colour, the size of a webcam frame."""
    small = torch.rand(3, 12, 16, generator=torch.Generator().manual_seed(seed))
    image = torch.nn.functional.interpolate(small[None], size=(480, 640), mode="bilinear")[0]
    return encode_jpeg((image * 255).to(torch.uint8)).numpy().tobytes()


class Server:
    """``ssd serve`` in a child process on a free loopback port."""

    def __init__(self, weights: Path, backend: str, max_batch: int) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        command = [sys.executable, "-m", "ssd", "serve", "--weights", str(weights), "--backend", backend,
                   "--port", str(self.port), "--max-batch", str(max_batch), "--max-wait-ms", "5"]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._up():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError(f"ssd serve on {weights} did not start")
            time.sleep(0.2)

    def _up(self) -> bool:
        try:
            return httpx2.get(f"{self.url}/v1/health", timeout=2).status_code == 200
        except httpx2.TransportError:
            return False

    def stats(self) -> dict:
        return httpx2.get(f"{self.url}/v1/stats", timeout=10).json()

    def resident_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def load(server: Server, image: bytes, clients: int, total: int) -> tuple[list[float], float]:
    """``total`` detect requests from ``clients`` threads: each request's seconds, and the wall time."""

    def client(count: int) -> list[float]:
        seconds = []
        with httpx2.Client(base_url=server.url, timeout=300) as session:
            for _ in range(count):
                start = time.perf_counter()
                session.post("/v1/detect", content=image).raise_for_status()
                seconds.append(time.perf_counter() - start)
        return seconds

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        parts = list(pool.map(client, [total // clients] * clients))
    return [s for part in parts for s in part], time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def load_table(paths: dict[str, dict[str, Path]], image: bytes) -> list[str]:
    lines = ["| model | backend | batching | clients | p50 ms | p99 ms | images/s | mean batch |", "|---" * 8 + "|"]
    for model, total in MODELS.items():
        for backend, weights in paths[model].items():
            for max_batch in (8, 1):
                server = Server(weights, backend, max_batch)
                try:
                    load(server, image, 1, 4)  # warm-up
                    for clients in CONCURRENCY:
                        before = server.stats()
                        seconds, wall = load(server, image, clients, total)
                        after = server.stats()
                        batch = (after["requests"] - before["requests"]) / (after["batches"] - before["batches"])
                        lines.append(
                            f"| {model} | {backend} | {'on (8)' if max_batch > 1 else 'off'} | {clients} | "
                            f"{percentile(seconds, 50) * 1000:.1f} | {percentile(seconds, 99) * 1000:.1f} | "
                            f"{len(seconds) / wall:.1f} | {batch:.2f} |"
                        )
                        print(lines[-1], flush=True)
                finally:
                    server.close()
    return lines


def overhead_table(paths: dict[str, dict[str, Path]], image: bytes, rounds: int) -> list[str]:
    """Client latency of one request against ``Predictor`` on the same bytes in this process (decode and detect),
    interleaved, each after a pause."""
    from ssd.images import decode_image_bytes

    lines = ["| model | Predictor ms | server ms | overhead ms |", "|---|---|---|---|"]
    for model in MODELS:
        weights = paths[model]["torch"]
        predictor = Predictor(weights, batch_size=1)
        server = Server(weights, "torch", 8)
        try:
            direct, served = [], []
            with httpx2.Client(base_url=server.url, timeout=300) as session:
                for _ in range(rounds + 2):
                    time.sleep(PAUSE_S)
                    start = time.perf_counter()
                    predictor.detect([decode_image_bytes(image, "bench")])
                    direct.append(time.perf_counter() - start)
                    time.sleep(PAUSE_S)
                    start = time.perf_counter()
                    session.post("/v1/detect", content=image).raise_for_status()
                    served.append(time.perf_counter() - start)
            direct, served = direct[2:], served[2:]  # after two rounds of warm-up
        finally:
            server.close()
        d, s = statistics.median(direct) * 1000, statistics.median(served) * 1000
        lines.append(f"| {model} | {d:.1f} | {s:.1f} | {s - d:.1f} |")
        print(lines[-1], flush=True)
    return lines


def memory_table(paths: dict[str, dict[str, Path]], image: bytes) -> list[str]:
    """The server's resident memory after 100 and after 1,000 requests of the demo model (4 clients)."""
    server = Server(paths["shapes (demo)"]["torch"], "torch", 8)
    try:
        load(server, image, 4, 100)
        after_100 = server.resident_mib()
        load(server, image, 4, 900)
        after_1000 = server.resident_mib()
    finally:
        server.close()
    return [
        "| requests | resident MiB |",
        "|---|---|",
        f"| 100 | {after_100:.0f} |",
        f"| 1,000 | {after_1000:.0f} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds of the overhead measurement")
    parser.add_argument("--out", help="also write the tables to this markdown file")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
    image = photo_jpeg()
    with tempfile.TemporaryDirectory() as folder:
        paths = write_models(Path(folder))
        tables = [load_table(paths, image), overhead_table(paths, image, args.rounds), memory_table(paths, image)]
    text = "\n\n".join("\n".join(t) for t in tables) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()

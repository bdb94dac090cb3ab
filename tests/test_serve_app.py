"""The HTTP API on FastAPI's test client: detections equal to the Predictor's, every bad input its status and
message with the server going on, the API key, CORS, the page and its files, health while a batch computes."""

import threading

import httpx2
import pytest
import torch
from fastapi.testclient import TestClient

from serve_helpers import running_server, tiny_checkpoint, write_client_images
from ssd.engine.predictor import Predictor
from ssd.serve import ServeSettings
from ssd.serve.app import create_app


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_client_images(tmp_path_factory.mktemp("images"))


def client_for(checkpoint, **settings) -> TestClient:
    predictor = Predictor(checkpoint, batch_size=8)
    return TestClient(create_app(predictor, ServeSettings(model_name="tiny.pt", **settings)))


def assert_same_detections(response: dict, expected: dict) -> None:
    got = response["detections"]
    assert len(got) == len(expected["scores"]) > 0
    torch.testing.assert_close(torch.tensor([d["box"] for d in got]), expected["boxes"], atol=0.006, rtol=0)
    torch.testing.assert_close(torch.tensor([d["score"] for d in got]), expected["scores"], atol=6e-6, rtol=0)
    assert [d["label"] for d in got] == expected["labels"].tolist()
    assert [d["name"] for d in got] == expected["names"]


def test_detections_equal_the_predictors_as_body_or_multipart_and_with_filters(checkpoint, images):
    reference = Predictor(checkpoint)
    with client_for(checkpoint) as client:
        for name, path in images.items():
            expected = reference(path)[0]
            as_body = client.post("/v1/detect", content=path.read_bytes(), headers={"Content-Type": "image/jpeg"})
            as_file = client.post("/v1/detect", files={"file": (name, path.read_bytes(), "application/octet-stream")})
            for response in (as_body, as_file):
                assert response.status_code == 200, response.text
                body = response.json()
                assert body["model"] == "tiny.pt" and body["time_ms"] > 0
                height, width = expected_size = reference._to_image(path).shape[-2:]
                assert (body["image"]["height"], body["image"]["width"]) == tuple(expected_size)
                assert_same_detections(body, expected)
        portrait = client.post("/v1/detect", content=images["portrait.jpg"].read_bytes()).json()
        assert portrait["image"] == {"width": 90, "height": 120}  # upright: stored 120 wide, EXIF orientation 6

        params = {"conf": 0.3, "max_det": 5, "classes": "dog,3"}
        filtered = client.post("/v1/detect", params=params, content=images["photo.jpg"].read_bytes()).json()
        expected = Predictor(checkpoint, conf=0.3, max_det=5, classes=["dog", 3])(images["photo.jpg"])[0]
        assert_same_detections(filtered, expected)
        assert {d["name"] for d in filtered["detections"]} <= {"dog", "bird"}


def test_bad_requests_get_their_status_and_a_message_and_the_server_goes_on(checkpoint, images):
    png = images["crop.png"].read_bytes()
    cases = [
        (dict(content=b""), 400, "empty request"),
        (dict(content=b"%PDF-1.7 not an image"), 415, "not an image"),
        (dict(content=png[: len(png) // 2]), 400, "cannot be decoded"),
        (dict(files={"note": ("a.txt", b"", "text/plain")}, data={"x": "1"}), 400, "empty request"),
        (dict(data={"x": "1"}, headers={"Content-Type": "multipart/form-data; boundary=zz"}), 400, "malformed"),
        (dict(content=b"\xff\xd8\xff" + b"0" * 40_000), 413, "over this server's limit of 30000 bytes"),
        (dict(content=png, params={"conf": 2}), 422, "conf: Input should be less than or equal to 1"),
        (dict(content=png, params={"max_det": 0}), 422, "max_det: Input should be greater than or equal to 1"),
        (dict(content=png, params={"classes": "unicorn"}), 422, "classes: class 'unicorn' is not one of"),
    ]
    with client_for(checkpoint, max_bytes=30_000, max_pixels=64 * 80) as client:
        for request, status, message in cases:
            response = client.post("/v1/detect", **request)
            assert response.status_code == status, (request.keys(), response.text)
            assert response.json()["status"] == status and message in response.json()["error"], response.json()
            assert client.post("/v1/detect", content=png).status_code == 200  # and the next request is served
        too_many_pixels = client.post("/v1/detect", content=images["photo.jpg"].read_bytes()[:2000])
        assert too_many_pixels.status_code == 413 and "120x90 pixels" in too_many_pixels.json()["error"]
        bomb = client.post("/v1/detect", content=png_header_of_size(20_000, 20_000))  # 400 Mpx: not decoded
        assert bomb.status_code == 413 and "decompression bomb" in bomb.json()["error"]
        empty_classes = client.post("/v1/detect", params={"classes": ","}, content=png)
        assert empty_classes.status_code == 422 and "name at least one class" in empty_classes.json()["error"]
        boundary = "b0undary"
        multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
                     "Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()  # fmt: skip
        headers = {"Content-Type": f"Multipart/Form-Data; boundary={boundary}"}  # the type is case-insensitive
        assert client.post("/v1/detect", content=multipart, headers=headers).status_code == 200
        assert client.get("/v1/nowhere").json() == {"error": "Not Found", "status": 404}


def png_header_of_size(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels: its header and one tiny data chunk, which decodes nothing."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_a_failing_model_and_a_full_queue_answer_500_and_503_in_json(checkpoint, images):
    predictor = Predictor(checkpoint)
    real_detect, calls = predictor.detect, []

    def fail_once(batch, keep=None):
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return real_detect(batch, keep)

    predictor.detect = fail_once
    png = images["crop.png"].read_bytes()
    with TestClient(create_app(predictor, ServeSettings(model_name="tiny.pt"))) as client:
        failed = client.post("/v1/detect", content=png)
        assert failed.status_code == 500
        assert failed.json()["error"] == "the model failed on this image's batch: out of memory"
        assert client.post("/v1/detect", content=png).status_code == 200
    with TestClient(create_app(predictor, ServeSettings(model_name="tiny.pt"))) as client:
        batcher_busy = "ssd.serve.batching.DynamicBatcher.submit"
        from unittest import mock

        from ssd.serve.batching import Busy

        with mock.patch(batcher_busy, side_effect=Busy("256 images are waiting for the model already")):
            busy = client.post("/v1/detect", content=png)
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
        assert busy.json() == {"error": "256 images are waiting for the model already", "status": 503}

    release = threading.Event()
    slow = Predictor(checkpoint)
    real = slow.detect
    slow.detect = lambda batch, keep=None: release.wait(timeout=30) and real(batch, keep)
    with TestClient(create_app(slow, ServeSettings(model_name="tiny.pt", timeout_s=0.2))) as client:
        late = client.post("/v1/detect", content=png)  # the settings reach the batcher: --timeout is honoured
        release.set()
    assert late.status_code == 503 and late.json()["error"] == "no result within 0.2 s: the server is overloaded"


def test_the_api_key_guards_every_v1_route_and_cors_is_off_unless_asked(checkpoint, images):
    with client_for(checkpoint, api_key="s3cret") as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            response = client.get("/v1/health", headers=headers)
            assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
            assert "Authorization: Bearer <key>" in response.json()["error"]
        assert client.post("/v1/detect", content=images["crop.png"].read_bytes()).status_code == 401
        good = {"Authorization": "Bearer s3cret"}
        assert client.get("/v1/health", headers=good).json() == {"status": "ok"}
        assert client.get("/").status_code == 200  # the page is public; it asks for the key
        origin = {"Origin": "http://elsewhere.test", **good}
        assert "access-control-allow-origin" not in client.get("/v1/health", headers=origin).headers
    with client_for(checkpoint, cors_origins=("http://app.test",)) as client:
        allowed = client.get("/v1/health", headers={"Origin": "http://app.test"})
        assert allowed.headers["access-control-allow-origin"] == "http://app.test"
        assert (
            "access-control-allow-origin" not in client.get("/v1/health", headers={"Origin": "http://x.test"}).headers
        )


def test_model_stats_page_and_openapi(checkpoint, images):
    with client_for(checkpoint, max_batch=4) as client:
        model = client.get("/v1/model").json()
        assert model["class_names"] == ["cat", "dog", "bird"] and model["input_size"] == 128
        assert (model["backend"], model["precision"], model["max_batch"]) == ("torch", "fp32", 4)
        for _ in range(3):
            client.post("/v1/detect", content=images["crop.png"].read_bytes())
        stats = client.get("/v1/stats").json()
        assert stats["requests"] == 3 and stats["batches"] == 3 and stats["batch_sizes"] == {"1": 3}
        page = client.get("/")
        assert page.headers["content-type"].startswith("text/html") and "/static/app.js" in page.text
        assert "getUserMedia" in client.get("/static/app.js").text
        assert "/v1/detect" in client.get("/openapi.json").json()["paths"]


def test_health_answers_while_a_batch_computes(checkpoint, images):
    predictor = Predictor(checkpoint)
    release, entered, real_detect = threading.Event(), threading.Event(), predictor.detect

    def slow_detect(batch, keep=None):
        entered.set()
        release.wait(timeout=30)
        return real_detect(batch, keep)

    predictor.detect = slow_detect
    app = create_app(predictor, ServeSettings(model_name="tiny.pt"))
    with running_server(app) as url:
        results = {}
        thread = threading.Thread(
            target=lambda: results.update(
                r=httpx2.post(f"{url}/v1/detect", content=images["crop.png"].read_bytes(), timeout=60)
            )
        )
        thread.start()
        assert entered.wait(timeout=30)
        health = httpx2.get(f"{url}/v1/health", timeout=5)  # answered while the model is busy
        assert health.json() == {"status": "ok"} and thread.is_alive()
        release.set()
        thread.join(timeout=30)
    assert results["r"].status_code == 200 and len(results["r"].json()["detections"]) > 0

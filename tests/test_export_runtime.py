"""OnnxRuntimeDetector against the PyTorch model: detections, metadata, input errors."""

from pathlib import Path

import pytest
import torch

import ssd
from model_helpers import CLASS_NAMES, export_detection_and_raw, images_of_three_sizes, tiny_model_with_spread_scores
from ssd.export import OnnxRuntimeDetector


@pytest.fixture(scope="module")
def model() -> ssd.SSD:
    return tiny_model_with_spread_scores()


@pytest.fixture(scope="module")
def files(model, tmp_path_factory) -> dict[str, Path]:
    return export_detection_and_raw(model, tmp_path_factory.mktemp("onnx"))


def assert_same_detections(got: list[dict], expected: list[dict], box_atol: float) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert len(g["scores"]) == len(e["scores"]) > 0
        assert torch.equal(g["labels"], e["labels"])
        torch.testing.assert_close(g["scores"], e["scores"], atol=1e-5, rtol=0)
        torch.testing.assert_close(g["boxes"], e["boxes"], atol=box_atol, rtol=0)


@pytest.mark.parametrize("kind", ["detections", "raw"])
def test_detector_matches_pytorch_on_images_of_different_sizes(model, files, kind):
    images = images_of_three_sizes()
    detector = OnnxRuntimeDetector(files[kind], providers=["CPUExecutionProvider"], num_threads=1)
    assert detector.raw == (kind == "raw")
    with torch.no_grad():
        expected = model(images)
    got = detector(images)
    assert_same_detections(got, expected, box_atol=1e-3)
    # boxes are in pixels of each original image: inside 0..W, 0..H, and the small image's boxes fit it
    for img, det in zip(images, got):
        h, w = img.shape[-2:]
        assert det["boxes"][:, 0::2].max() <= w and det["boxes"][:, 1::2].max() <= h
    assert got[2]["boxes"][:, 1::2].max() > 45  # in pixels, not normalised


def test_detector_reads_everything_from_the_file(files):
    detector = OnnxRuntimeDetector(files["detections"])
    assert detector.class_names == CLASS_NAMES
    assert detector.input_size == 128
    assert detector.num_classes == 4
    assert detector.config.nms_thresh == 0.45
    (one,) = detector([torch.rand(3, 64, 48)])
    assert one["boxes"].shape[1] == 4 and one["labels"].dtype == torch.int64


def test_detector_rejects_bad_input(files, tmp_path):
    detector = OnnxRuntimeDetector(files["detections"])
    with pytest.raises(ssd.SSDError, match=r"\[3, H, W\]"):
        detector([torch.rand(1, 50, 50)])
    with pytest.raises(ssd.DataError, match="missing.onnx"):
        OnnxRuntimeDetector(tmp_path / "missing.onnx")

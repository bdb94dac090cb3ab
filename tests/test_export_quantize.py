"""Int8 quantization of exported files: fused ReLUs, metadata kept, outputs close to fp32, calibration."""

import logging
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
import torch

import ssd
from bench_vs_torchvision import measure_batch_norm_statistics
from model_helpers import export_detection_and_raw, images_of_three_sizes, tiny_model_with_spread_scores
from ssd.export import OnnxRuntimeDetector, quantize_onnx_int8, read_export_info

QUANTIZE_LOGGER = "ssd.export.quantize"


@pytest.fixture(scope="module")
def model() -> ssd.SSD:
    return tiny_model_with_spread_scores()


@pytest.fixture(scope="module")
def files(model, tmp_path_factory) -> dict[str, Path]:
    return export_detection_and_raw(model, tmp_path_factory.mktemp("onnx"))


def op_types(path: Path) -> list[str]:
    return [node.op_type for node in onnx.load(str(path)).graph.node]


def test_int8_raw_outputs_are_close_to_fp32(files, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    int8_path = quantize_onnx_int8(files["raw"], tmp_path / "sub" / "tiny_raw_int8.onnx", images_of_three_sizes())
    assert int8_path == tmp_path / "sub" / "tiny_raw_int8.onnx" and int8_path.is_file()
    assert logging.getLogger().level == logging.DEBUG  # the quieted root logger is restored
    assert not [r for r in caplog.records if r.name == QUANTIZE_LOGGER]  # real images: no warning

    ops = op_types(int8_path)
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert "Relu" not in ops  # folded into the convolutions' output ranges, so ONNX Runtime fuses them
    assert "Relu" in op_types(files["raw"])  # the fp32 model had ReLUs to fold
    assert read_export_info(int8_path).config == read_export_info(files["raw"]).config  # metadata kept
    assert int8_path.stat().st_size < 0.5 * files["raw"].stat().st_size  # int8 weights

    x = torch.rand(2, 3, 128, 128).numpy()
    fp32 = ort.InferenceSession(str(files["raw"]), providers=["CPUExecutionProvider"]).run(None, {"images": x})
    int8 = ort.InferenceSession(str(int8_path), providers=["CPUExecutionProvider"]).run(None, {"images": x})
    for name, a, b in zip(["loc", "conf"], fp32[:2], int8[:2]):
        a, b = torch.from_numpy(a), torch.from_numpy(b)
        assert a.shape == b.shape
        rel_error = (a - b).abs().mean() / a.abs().mean()
        assert 0 < rel_error < 0.1, name  # quantized (not identical) yet close
        assert torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1] > 0.99, name
    assert (fp32[2] == int8[2]).all()  # priors untouched


def test_random_calibration_warns_and_the_int8_detection_file_runs_in_the_detector(files, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger=QUANTIZE_LOGGER):
        int8_path = quantize_onnx_int8(files["detections"], tmp_path / "tiny_int8.onnx")
    warnings = [r for r in caplog.records if r.name == QUANTIZE_LOGGER]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert "no calibration images" in warnings[0].getMessage()

    float_ops = set(op_types(int8_path))
    assert {"NonMaxSuppression", "TopK", "Softmax"} <= float_ops  # post-processing still in the graph
    assert "Relu" not in float_ops and "QuantizeLinear" in float_ops
    assert read_export_info(int8_path).config == read_export_info(files["detections"]).config
    images = images_of_three_sizes()
    detections = OnnxRuntimeDetector(int8_path)(images)
    for det, img in zip(detections, images):
        assert 0 < len(det["scores"]) <= 200
        assert det["scores"].diff().le(0).all()  # best first
        assert det["boxes"][:, 2:].le(torch.tensor([img.shape[2], img.shape[1]])).all()
        assert det["labels"].ge(1).all() and det["labels"].le(3).all()


def test_int8_ssdlite_stays_close_to_fp32(tmp_path):
    """The MobileNet path (depthwise convolutions, hard-swish, squeeze-excitation) quantizes and stays close."""
    from ssd.export.onnx import export_onnx

    torch.manual_seed(0)
    model = ssd.build_model("ssdlite320_mobilenet_v3_large", 4, input_size=160, scales=None, steps=None,
                            min_sizes=[16, 32, 56, 80, 104, 128], max_sizes=[32, 56, 80, 104, 128, 160])  # fmt: skip
    # statistics of real activations, so that the random network's signal does not vanish
    measure_batch_norm_statistics(model, lambda: model.net(torch.randn(4, 3, 160, 160)))
    raw = export_onnx(model, tmp_path / "lite_raw.onnx", raw=True, verify=False)
    int8_path = quantize_onnx_int8(raw, tmp_path / "lite_raw_int8.onnx", images_of_three_sizes())
    assert op_types(int8_path).count("DequantizeLinear") > 50  # every convolution's weights and inputs
    x = torch.rand(2, 3, 160, 160).numpy()
    fp32 = ort.InferenceSession(str(raw), providers=["CPUExecutionProvider"]).run(None, {"images": x})
    int8 = ort.InferenceSession(str(int8_path), providers=["CPUExecutionProvider"]).run(None, {"images": x})
    for name, a, b in zip(["loc", "conf"], fp32[:2], int8[:2]):
        a, b = torch.from_numpy(a).flatten(), torch.from_numpy(b).flatten()
        # a random network amplifies rounding more than a trained one (the demo's SSDLite lost 0.3 VOC07 points)
        assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.9, name

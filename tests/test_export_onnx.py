"""ONNX export: the NMS op against ONNX Runtime's, the exported file against PyTorch, metadata."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import ssd
from bench_vs_torchvision import measure_batch_norm_statistics
from model_helpers import CLASS_NAMES, TINY_128
from ssd.export.onnx import (
    export_onnx,
    read_export_info,
    verify_onnx,
)
from ssd.postprocess import non_max_suppression


def tiny_model(**overrides) -> ssd.SSD:
    """The tiny SSD, whose class scores are close to uniform but distinct (no ties between ORT and PyTorch)."""
    torch.manual_seed(0)
    model = ssd.build_model("ssd300_vgg16", 4, **{**TINY_128, "class_names": CLASS_NAMES, **overrides}).eval()
    with torch.no_grad():
        for layer in model.net.head.conf:
            layer.weight.mul_(0.3)  # logits of std ~1: scores spread over 0..1, no float ties
    return model


@pytest.fixture(scope="module")
def model() -> ssd.SSD:
    return tiny_model()


@pytest.fixture(scope="module")
def detection_file(model, tmp_path_factory) -> Path:
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx", verify=False)


@pytest.fixture(scope="module")
def raw_file(model, tmp_path_factory) -> Path:
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "tiny_raw.onnx", raw=True, verify=False)


def run_onnx(path: Path, images: torch.Tensor) -> list[torch.Tensor]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [torch.from_numpy(o) for o in session.run(None, {"images": images.numpy()})]


def nms_node_session(iou: float, score_thresh: float) -> ort.InferenceSession:
    """ONNX Runtime running one NonMaxSuppression node with the given thresholds."""
    h, t = onnx.helper, onnx.TensorProto
    consts = [
        h.make_node("Constant", [], ["max"], value=h.make_tensor("max", t.INT64, [1], [1000])),
        h.make_node("Constant", [], ["iou"], value=h.make_tensor("iou", t.FLOAT, [1], [iou])),
        h.make_node("Constant", [], ["thr"], value=h.make_tensor("thr", t.FLOAT, [1], [score_thresh])),
    ]
    node = h.make_node("NonMaxSuppression", ["boxes", "scores", "max", "iou", "thr"], ["selected"])
    graph = h.make_graph(
        consts + [node],
        "nms",
        [h.make_tensor_value_info("boxes", t.FLOAT, None), h.make_tensor_value_info("scores", t.FLOAT, None)],
        [h.make_tensor_value_info("selected", t.INT64, None)],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_non_max_suppression_matches_onnx_runtime():
    xy = torch.rand(3, 60, 2) * 0.7
    boxes = torch.cat([xy, xy + 0.05 + torch.rand(3, 60, 2) * 0.3], dim=2)  # [3, 60, 4] xyxy
    scores = torch.rand(3, 4, 60)
    session = nms_node_session(0.3, 0.2)
    expected = session.run(None, {"boxes": boxes.numpy(), "scores": scores.numpy()})[0]
    got = non_max_suppression(boxes, scores, 0.3, 0.2)
    assert len(got) > 20
    np.testing.assert_array_equal(got.numpy(), expected)  # same rows in the same order


def test_onnx_file_is_valid_with_a_dynamic_batch(detection_file, model):
    onnx_model = onnx.load(str(detection_file))
    onnx.checker.check_model(onnx_model, full_check=True)
    assert max(o.version for o in onnx_model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert "NonMaxSuppression" in {node.op_type for node in onnx_model.graph.node}
    shapes = {
        o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in onnx_model.graph.output
    }
    assert shapes == {
        "boxes": ["batch", 200, 4],
        "scores": ["batch", 200],
        "labels": ["batch", 200],
        "num_detections": ["batch"],
    }


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_detections_equal_pytorch(detection_file, model, batch):
    x = torch.rand(batch, 3, 128, 128)
    boxes, scores, labels, counts = run_onnx(detection_file, x)
    assert boxes.shape == (batch, 200, 4) and labels.dtype == torch.int64
    with torch.no_grad():
        expected = model(list(x))
    for i, exp in enumerate(expected):
        n = int(counts[i])
        assert n == len(exp["scores"]) > 0
        assert torch.equal(labels[i, :n], exp["labels"])
        torch.testing.assert_close(scores[i, :n], exp["scores"], atol=1e-5, rtol=0)
        torch.testing.assert_close(boxes[i, :n] * 128, exp["boxes"], atol=1e-3, rtol=0)


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_raw_outputs_equal_pytorch(raw_file, model, batch):
    x = torch.rand(batch, 3, 128, 128)
    loc, conf, priors = run_onnx(raw_file, x)
    with torch.no_grad():
        expected_loc, expected_conf = model.net(model.preprocess(list(x)))
    torch.testing.assert_close(loc, expected_loc, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(conf, expected_conf, atol=1e-4, rtol=1e-4)
    assert torch.equal(priors, model.priors)


def test_metadata_round_trip(detection_file, raw_file, model):
    info = read_export_info(detection_file)
    assert info.config == model.config and not info.raw
    assert info.config.class_names == CLASS_NAMES
    assert read_export_info(raw_file).raw


def test_no_detection_above_threshold(tmp_path):
    model = tiny_model(score_thresh=0.3)
    with torch.no_grad():
        for layer in model.net.head.conf:
            layer.weight.zero_()  # every score is 1/4
    model.train()
    path = export_onnx(model, tmp_path / "none.onnx", verify=False)
    assert model.training  # exported in eval mode (batch norm statistics), then put back
    model.eval()
    x = torch.rand(2, 3, 128, 128)
    boxes, scores, labels, counts = run_onnx(path, x)
    with torch.no_grad():
        assert [len(d["scores"]) for d in model(list(x))] == [0, 0]
    assert counts.tolist() == [0, 0]
    assert boxes.abs().sum() == 0 and scores.abs().sum() == 0 and labels.abs().sum() == 0


def test_verify_catches_a_disagreement(detection_file, raw_file, model):
    assert verify_onnx(model, detection_file) < 1e-4
    changed = tiny_model()
    with torch.no_grad():
        for layer in changed.net.head.loc:
            layer.bias.add_(0.2)  # moves every box by about 0.002 of the image
    with pytest.raises(ssd.SSDError, match="disagree"):
        verify_onnx(changed, raw_file)
    with pytest.raises(ssd.SSDError, match="disagree"):
        verify_onnx(changed, detection_file)


def test_export_checks_opset(model, tmp_path):
    with pytest.raises(ssd.SSDError, match="opset"):
        export_onnx(model, tmp_path / "old.onnx", opset=13)


def test_foreign_onnx_file_is_a_data_error(tmp_path):
    path = tmp_path / "foreign.onnx"
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    onnx.save(onnx.helper.make_model(graph), str(path))
    with pytest.raises(ssd.DataError, match="foreign.onnx.*not an ONNX file exported by ssd-detector"):
        read_export_info(path)
    (tmp_path / "broken.onnx").write_bytes(b"not protobuf at all")
    with pytest.raises(ssd.DataError, match="broken.onnx"):
        read_export_info(tmp_path / "broken.onnx")


def calibrated(model: ssd.SSD, size: int) -> ssd.SSD:
    """``model`` in eval mode with batch-norm statistics measured on random images and class logits of std ~1, so
    that its random weights give spread scores."""
    measure_batch_norm_statistics(model, lambda: model.net(torch.randn(4, 3, size, size)))
    with torch.no_grad():
        logit_std = float(model.net(torch.randn(1, 3, size, size))[1].std())
        for predictor in model.net.head.conf:  # logits of std ~1: no saturated scores, so no ties
            last = predictor[-1] if isinstance(predictor, torch.nn.Sequential) else predictor
            last.weight.div_(max(1.0, logit_std))
    return model


@pytest.mark.parametrize("preset", ["ssdlite320_mobilenet_v3_large", "ssdlite320_mobilenet_v2", "ssd300_resnet50"])
def test_every_family_preset_exports_with_the_same_detections(preset, tmp_path):
    torch.manual_seed(0)
    model = ssd.build_model(preset, 4, score_thresh=0.05)
    size = model.config.input_size
    model = calibrated(model, size)
    path = export_onnx(model, tmp_path / f"{preset}.onnx")  # verifies itself against ONNX Runtime too
    x = torch.rand(2, 3, size, size)
    boxes, scores, labels, counts = run_onnx(path, x)
    with torch.no_grad():
        expected = model(list(x))
    for i, exp in enumerate(expected):  # float rounding may swap near-equal scores or the last one in or out
        n = int(counts[i])
        assert abs(n - len(exp["scores"])) <= 1 and n > 10
        close = (boxes[i, :n, None] * size - exp["boxes"][None]).abs().amax(dim=2) < 1e-2  # [n_ort, n_torch]
        found = (close & (labels[i, :n, None] == exp["labels"][None])).any(dim=0)
        assert found.float().mean() >= 0.98
        m = min(n, len(exp["scores"]))
        torch.testing.assert_close(scores[i, :m], exp["scores"][:m], atol=1e-4, rtol=0)

"""Loading a detector: a checkpoint, a built SSD or an ONNX file, with its precision, device and class names."""

import pytest
import torch

import ssd
from model_helpers import TINY_128
from ssd.engine.detectors import AutocastDetector, class_names_or_default, load_detector, with_precision
from ssd.errors import SSDError


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = ssd.build_model("ssd300_vgg16", 3, **TINY_128, class_names=["__background__", "cat", "dog"]).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    ssd.save(model, path)
    return path


def test_a_checkpoint_loads_channels_last_on_the_cpu_with_its_names(checkpoint):
    loaded = load_detector(checkpoint, device="cpu")
    assert loaded.class_names == ["__background__", "cat", "dog"] and loaded.input_size == 128
    assert loaded.device == torch.device("cpu") and not loaded.detector.training
    weight = loaded.detector.net.backbone.features[0].weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    images = [torch.rand(3, 90, 120, generator=torch.Generator().manual_seed(1))]
    with torch.no_grad():
        got, expected = loaded.detector(images)[0], ssd.load(checkpoint)(images)[0]
    torch.testing.assert_close(got["scores"], expected["scores"], atol=1e-4, rtol=0)


def test_a_built_model_stays_where_it_is_and_bf16_wraps_it():
    model = ssd.build_model("ssd300_vgg16", 4, **TINY_128).train()
    loaded = load_detector(model, precision="bf16")
    assert isinstance(loaded.detector, AutocastDetector) and loaded.detector.dtype == torch.bfloat16
    assert not model.training and loaded.device == model.priors.device
    assert loaded.class_names == ["__background__", "class1", "class2", "class3"]


def test_precisions_and_backends_are_checked(checkpoint, tmp_path):
    model = torch.nn.Identity()
    assert with_precision(model, "fp32", torch.device("cpu")) is model
    with pytest.raises(SSDError, match="fp16 needs a CUDA device"):
        with_precision(model, "fp16", torch.device("cpu"))
    with pytest.raises(SSDError, match="unknown precision 'int4'"):
        with_precision(model, "int4", torch.device("cpu"))
    with pytest.raises(SSDError, match="unknown backend 'tensorrt'"):
        load_detector(checkpoint, backend="tensorrt")
    with pytest.raises(SSDError, match="runs with backend='onnxruntime'"):
        load_detector(tmp_path / "model.onnx")
    with pytest.raises(SSDError, match="built SSD model runs with backend='torch'"):
        load_detector(ssd.load(checkpoint), backend="onnxruntime")


def test_default_class_names():
    assert class_names_or_default(None, 3) == ["__background__", "class1", "class2"]
    assert class_names_or_default(["__background__", "a"], 2) == ["__background__", "a"]

import pytest
import torch

import ssd
from ssd.errors import SSDError
from ssd.layout import apply_layout, prefers_channels_last

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")


def test_rule_inference_is_channels_last_on_cpu_and_cuda():
    for backbone in ("vgg16", "resnet50", "mobilenet_v3_large"):
        assert prefers_channels_last(CPU, training=False, backbone=backbone)
        assert prefers_channels_last(CUDA, training=False, backbone=backbone)
        assert not prefers_channels_last(MPS, training=False, backbone=backbone)


@pytest.mark.parametrize("capability, vgg", [("AVX2", False), ("AVX512", True), ("AVX512_VNNI", True)])
def test_rule_cpu_training_depends_on_avx512_and_the_backbone(monkeypatch, capability, vgg):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert prefers_channels_last(CPU, training=True, backbone="vgg16") is vgg
    assert prefers_channels_last(CPU, training=True, backbone="resnet50")
    assert prefers_channels_last(CPU, training=True, backbone="mobilenet_v2")
    assert prefers_channels_last(CUDA, training=True, backbone="vgg16")


def _is_channels_last(model) -> bool:
    weight = next(m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    return weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()


def test_apply_layout_forces_either_way_and_auto_follows_the_rule(tiny_96, monkeypatch):
    model = ssd.build_model("ssd300_vgg16", 3, **tiny_96)
    assert _is_channels_last(apply_layout(model, CPU, training=True, setting=True))
    assert not _is_channels_last(apply_layout(model, CPU, training=True, setting=False))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert not _is_channels_last(apply_layout(model, CPU, training=True))  # VGG on AVX2
    assert _is_channels_last(apply_layout(model, CPU, training=False))


def test_the_python_api_chooses_the_layout(tmp_path, monkeypatch, tiny_96):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert _is_channels_last(ssd.build_model("ssdlite320_mobilenet_v2", 3))  # not VGG: channels-last trains faster
    vgg = ssd.build_model("ssd300_vgg16", 3, **tiny_96)
    assert not _is_channels_last(vgg)  # VGG trains faster in the default layout on AVX2
    ssd.save(vgg, tmp_path / "m.pt")
    assert _is_channels_last(ssd.load(tmp_path / "m.pt"))  # inference


def test_training_follows_train_channels_last(monkeypatch, tiny_96):
    from ssd.config import RunConfig, TrainConfig
    from ssd.engine.distributed import DistInfo
    from ssd.engine.train import build_training_model

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    dist = DistInfo(rank=0, local_rank=0, world_size=1, device=CPU)
    for setting, expected in (("auto", False), (True, True), (False, False)):
        run = RunConfig(model=dict(tiny_96), train=TrainConfig(channels_last=setting))
        assert _is_channels_last(build_training_model(run, ["__background__", "a", "b"], dist)) is expected


def test_train_config_rejects_other_layout_values():
    with pytest.raises(SSDError, match="train.channels_last must be auto, true or false"):
        ssd.config.TrainConfig(channels_last="yes")

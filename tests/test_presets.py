"""Model presets: the paper's SSD300/SSD512 default boxes, torchvision's COCO layout, overrides and errors."""

import pytest
import torch
import torchvision

import ssd
from ssd.errors import SSDError
from ssd.presets import PRESETS, model_config


def caffe_sizes(min_dim: int, first: tuple[int, int], min_ratio: int, max_ratio: int, maps: int) -> tuple[list, list]:
    """Min and max sizes in pixels as the original ``ssd_pascal.py`` computes them (percent of the input side)."""
    step = (max_ratio - min_ratio) // (maps - 2)
    ratios = range(min_ratio, max_ratio + 1, step)
    min_sizes = [min_dim * first[0] / 100] + [min_dim * r / 100 for r in ratios]
    max_sizes = [min_dim * first[1] / 100] + [min_dim * (r + step) / 100 for r in ratios]
    return min_sizes, max_sizes


def test_ssd300_has_the_papers_sizes_steps_and_aspect_ratios():
    config = model_config("ssd300_vgg16")
    min_sizes, max_sizes = caffe_sizes(300, (10, 20), 20, 90, 6)  # step 17: 20, 37, 54, 71, 88 percent
    assert config.min_sizes == pytest.approx(min_sizes) and config.max_sizes == pytest.approx(max_sizes)
    assert config.min_sizes == [30, 60, 111, 162, 213, 264] and config.max_sizes == [60, 111, 162, 213, 264, 315]
    assert config.steps == [8, 16, 32, 64, 100, 300]
    assert config.aspect_ratios == [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
    assert (config.input_size, config.num_classes, config.clip, config.scales) == (300, 21, False, None)


def test_ssd512_has_the_papers_sizes_steps_and_aspect_ratios():
    config = model_config("ssd512_vgg16")
    min_sizes, max_sizes = caffe_sizes(512, (7, 15), 15, 90, 7)  # step 15: 15, 30, ..., 90 percent
    assert config.min_sizes == pytest.approx(min_sizes) and config.max_sizes == pytest.approx(max_sizes)
    assert config.steps == [8, 16, 32, 64, 128, 256, 512]
    assert config.aspect_ratios == [[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]]
    assert config.input_size == 512 and len(config.extras) == 5
    assert config.extras[-1] == [128, 256, 4, 1, 1]  # conv12_2: a 4x4 kernel takes the 2x2 map to 1x1


@pytest.mark.parametrize(
    ("name", "sizes", "count"),
    [
        # 38² * 4 + 19² * 6 + 10² * 6 + 5² * 6 + 3² * 4 + 1² * 4
        ("ssd300_vgg16", [38, 19, 10, 5, 3, 1], 5776 + 2166 + 600 + 150 + 36 + 4),
        # 64² * 4 + 32² * 6 + 16² * 6 + 8² * 6 + 4² * 6 + 2² * 4 + 1² * 4
        ("ssd512_vgg16", [64, 32, 16, 8, 4, 2, 1], 16384 + 6144 + 1536 + 384 + 96 + 16 + 4),
    ],
)
def test_default_box_counts(name, sizes, count):
    model = ssd.build_model(name, width=0.125)
    assert model.feature_sizes == sizes
    assert model.priors.shape == (count, 4)
    assert count == {"ssd300_vgg16": 8732, "ssd512_vgg16": 24564}[name]


def test_coco_preset_matches_torchvision_ssd300_vgg16():
    config = model_config("ssd300_vgg16_coco")
    with torch.device("meta"):
        reference = torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None)
    anchors = reference.anchor_generator
    assert config.num_classes == 91
    assert config.scales == pytest.approx(anchors.scales)
    assert config.aspect_ratios == anchors.aspect_ratios
    assert config.steps == anchors.steps and config.clip == anchors.clip is True
    # torchvision normalises 0..1 images with std 1/255, which is std 1 on the 0..255 scale
    assert config.image_mean == pytest.approx([m * 255 for m in reference.transform.image_mean])
    assert config.image_std == pytest.approx([s * 255 for s in reference.transform.image_std])
    assert config.min_sizes is None and config.max_sizes is None
    # the defaults it does not override are the paper's (same network as SSD300)
    assert config.extras == model_config("ssd300_vgg16").extras and config.input_size == 300


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_each_preset_names_itself(name):
    assert model_config(name).name == name


def test_overrides_reach_the_config_and_keep_the_other_preset_values():
    config = model_config("ssd512_vgg16", width=0.5, num_classes=7, steps=None)
    assert (config.width, config.num_classes, config.steps) == (0.5, 7, None)
    assert config.input_size == 512 and config.min_sizes[0] == pytest.approx(35.84)
    assert model_config("ssd300_vgg16_coco", clip=False, num_classes=5).clip is False
    assert ssd.build_model("ssd512_vgg16", 3, width=0.125, score_thresh=0.3).config.score_thresh == 0.3


def test_presets_return_fresh_lists():
    first = model_config("ssd512_vgg16")
    first.extras.append([1, 2, 3, 1, 0])
    first.aspect_ratios[0].append(3)
    second = model_config("ssd512_vgg16")
    assert len(second.extras) == 5 and second.aspect_ratios[0] == [2]


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(SSDError, match="'ssd400'.*ssd300_vgg16, ssd300_vgg16_coco, ssd512_vgg16"):
        model_config("ssd400")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_unknown_override_key_is_an_error(name):
    with pytest.raises(SSDError, match=f"model preset {name}:.*'widht'"):
        model_config(name, widht=0.5)


def test_inconsistent_override_is_an_error():
    with pytest.raises(SSDError, match="model.steps needs 7 values"):
        model_config("ssd512_vgg16", steps=[8, 16, 32, 64, 100, 300])

import math

import pytest

import ssd
from ssd.config import ModelConfig
from ssd.errors import DataError, SSDError
from ssd.presets import model_config


def test_unknown_key_is_an_error_naming_it():
    with pytest.raises(SSDError, match="unknown key.*num_clases"):
        ModelConfig.from_dict({"num_clases": 3}, source="my.yaml")


def test_inconsistent_lengths_are_errors():
    with pytest.raises(SSDError, match="steps needs 6"):
        ModelConfig(steps=[8, 16])
    with pytest.raises(SSDError, match="class_names has 2 names"):
        ModelConfig(num_classes=3, class_names=["__background__", "a"])
    with pytest.raises(SSDError, match="scales needs 7"):
        ModelConfig(scales=[0.1, 0.2], min_sizes=None, max_sizes=None)


def test_unknown_preset():
    with pytest.raises(SSDError, match="unknown model preset"):
        model_config("yolo")


def test_dict_round_trip():
    cfg = model_config("ssd512_vgg16", num_classes=4)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_sizes_and_scales_are_two_spellings_of_the_same_boxes():
    by_pixels = ModelConfig().prior_sizes()
    by_scales = ModelConfig(
        min_sizes=None, max_sizes=None, scales=[0.1, 0.2, 0.37, 0.54, 0.71, 0.88, 1.05]
    ).prior_sizes()
    assert by_pixels[0] == pytest.approx(by_scales[0]) and by_pixels[1] == pytest.approx(by_scales[1])


def test_run_config_overrides(tmp_path):
    from ssd.config import load_run_config

    path = tmp_path / "run.yaml"
    path.write_text("preset: ssd300_vgg16\nmodel: {width: 0.5}\ntrain: {iterations: 100}\n")
    run = load_run_config(str(path), ["train.lr=0.01", "batch_size=8", "model.input_size=512", "milestones=[10, 20]"])
    assert run.train.lr == 0.01 and run.train.batch_size == 8 and run.train.milestones == [10, 20]
    assert run.model == {"width": 0.5, "input_size": 512}
    assert run.train.iterations == 100
    with pytest.raises(SSDError, match="unknown key"):
        load_run_config(str(path), ["train.lrr=0.1"])
    path.write_text("train: {iterations: 100, bogus: 1}\n")
    with pytest.raises(SSDError, match="bogus"):
        load_run_config(str(path))


def test_shipped_configs_load_by_name():
    from ssd.config import load_run_config

    voc = load_run_config("ssd300_vgg16_voc0712")
    assert voc.train.lr == 0.001 and voc.train.milestones == [80000, 100000] and voc.train.iterations == 120000
    assert load_run_config("ssd512_vgg16_voc0712").preset == "ssd512_vgg16"
    assert load_run_config("ssd300_vgg16_coco").train.eval_metric == "coco"


def test_shipped_family_recipes_state_the_published_schedules():
    from ssd.config import load_run_config

    lite = load_run_config("ssdlite320_mobilenet_v3_large_coco").train
    assert lite.scaled_lr == 0.15 and lite.schedule == "cosine" and lite.decay_biases_and_norms
    coco_train = 117_266  # train2017 images with boxes
    # torchvision: 8 processes of 24 images, incomplete batches dropped; mmdetection keeps them; NVIDIA: 8 x 32
    assert lite.iterations == 660 * (coco_train // 8 // 24) and (lite.zoom_out_max, lite.photometric) == (1.0, False)
    v2 = load_run_config("ssdlite320_mobilenet_v2_coco")
    assert v2.preset == "ssdlite320_mobilenet_v2" and v2.train.lr == 0.015
    assert v2.train.iterations == 600 * math.ceil(math.ceil(coco_train / 8) / 24)
    nvidia = load_run_config("ssd300_resnet50_coco").train
    assert nvidia.scaled_lr == pytest.approx(2.6e-3 * 256 / 32) and not nvidia.decay_biases_and_norms
    per_epoch = math.ceil(coco_train / 256)
    assert nvidia.milestones == [43 * per_epoch, 54 * per_epoch] and nvidia.iterations == 65 * per_epoch
    for name in ("shapes", "shapes_ssdlite"):
        run = load_run_config(name)
        ssd.build_model(run.preset, 7, **run.model)  # every shipped model section builds


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("eval_metric", "voc2007", "eval_metric"),
        ("checkpoint_interval", 0, "checkpoint_interval"),
        ("workers", -1, "workers"),
    ],
)
def test_train_config_rejects_values_that_would_fail_later(key, value, message):
    from ssd.config import TrainConfig

    with pytest.raises(SSDError, match=message):
        TrainConfig(**{key: value})


def test_a_directory_named_like_a_shipped_config_does_not_hide_it(tmp_path, monkeypatch):
    from ssd.config import load_run_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "shapes").mkdir()  # the demo's dataset folder
    assert load_run_config("shapes").model["input_size"] == 192
    (tmp_path / "mine.yaml").write_text("preset: ssd512_vgg16\n")
    assert load_run_config("mine.yaml").preset == "ssd512_vgg16"  # a file wins


def test_an_unknown_config_name_lists_the_shipped_ones(tmp_path, monkeypatch):
    from ssd.config import load_run_config

    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"config file not found \(shipped configs: .*shapes, shapes_ssdlite"):
        load_run_config("shapez")

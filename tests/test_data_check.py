"""check-data: statistics worked out by hand, default-box coverage, the report and the exit status."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from data_helpers import TINY_CLASSES, write_voc
from ssd.data import load_data_config
from ssd.data.check import PriorLayout, check_dataset, format_report, prior_coverage, run_check_data
from ssd.model.priors import generate_priors


def test_statistics_of_the_tiny_dataset(tmp_path: Path) -> None:
    report = check_dataset(load_data_config(write_voc(tmp_path)))
    assert report.ok and report.class_names == TINY_CLASSES
    [stats] = report.splits
    assert (stats.split, stats.num_images, stats.images_without_boxes) == ("train", 3, 1)
    assert (stats.num_boxes, stats.num_difficult, stats.num_crowd) == (5, 1, 0)
    assert stats.boxes_per_class == {"cat": 2, "dog": 2, "bird": 1}
    # sqrt(w h / (W H)) of the five boxes: img_a 64x48 image, img_b 40x60 image
    sizes = sorted([1.0, math.sqrt(20 * 20 / (64 * 48)), math.sqrt(15 * 40 / 2400), math.sqrt(20 * 30 / 2400),
                    math.sqrt(8 * 4 / 2400)])  # fmt: skip
    assert stats.size is not None and stats.aspect is not None
    assert stats.size.quantiles["min"] == pytest.approx(sizes[0])
    assert stats.size.quantiles["median"] == pytest.approx(sizes[2])
    assert stats.size.quantiles["max"] == pytest.approx(1.0)
    # bins <0.05, 0.05-0.1, 0.1-0.2, 0.2-0.3, 0.3-0.5, 0.5-0.7, >=0.7: 0.115, 0.354, 0.5, 0.5, 1.0
    assert stats.size.counts == [0, 0, 1, 0, 1, 2, 1]
    # w/h: 64/48, 20/20, 15/40, 20/30, 8/4
    assert stats.aspect.quantiles["median"] == pytest.approx(1.0)
    assert stats.aspect.quantiles["max"] == pytest.approx(2.0)
    assert stats.aspect.counts == [0, 1, 1, 1, 1, 1, 0]  # 0.375, 0.667, 1, 1.33, 2
    assert stats.coverage is None


def two_map_layout() -> PriorLayout:
    """Two maps: 2x2 cells with two 0.5-wide squares each (tiling the image), 1 cell with squares 0.7 and 1.0.

    generate_priors makes two squares per cell (sides min and sqrt(min * max)), so 2 boxes per location.
    """
    priors = generate_priors([2, 1], 100, [0.5, 0.7], [0.5, 1 / 0.7], [[], []])
    return PriorLayout(priors, [2, 1], [2, 2])


def test_coverage_of_boxes_equal_to_priors_is_one() -> None:
    layout = two_map_layout()
    assert layout.counts() == [8, 2] and len(layout.priors_cxcywh) == 10
    # box 1 equals the top-left prior of map 0; box 2 equals the big prior of map 1 (the whole image);
    # box 3 is a thin sliver that no prior covers well
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.1, 0.1]])
    coverage = prior_coverage(boxes, layout)
    assert coverage.num_boxes == 3
    assert coverage.share_iou50 == pytest.approx(2 / 3)
    assert coverage.best_iou.quantiles["max"] == pytest.approx(1.0)
    # the sliver's best prior is the 0.5 square at the corner: IoU 0.01 / 0.25
    assert coverage.best_iou.quantiles["min"] == pytest.approx(0.04)
    map0, map1 = coverage.scales
    assert (map0.feature_size, map0.num_priors, map1.feature_size, map1.num_priors) == (2, 8, 1, 2)
    # map 0: box 1 at IoU 1, box 2 at 0.25 (a quarter of the image), box 3 at 0.04; map 1 covers box 2 only
    assert map0.share_iou50 == pytest.approx(1 / 3) and map1.share_iou50 == pytest.approx(1 / 3)
    assert map0.share_best == pytest.approx(2 / 3) and map1.share_best == pytest.approx(1 / 3)
    assert map0.mean_best_iou == pytest.approx((1 + 0.25 + 0.04) / 3)


def test_coverage_with_a_real_model_layout(tmp_path: Path) -> None:
    import ssd

    model = ssd.build_model("ssd300_vgg16", num_classes=4, width=0.125)
    layout = PriorLayout.from_model(model)
    assert layout.feature_sizes == [38, 19, 10, 5, 3, 1] and layout.boxes_per_location == [4, 6, 6, 6, 4, 4]
    assert sum(layout.counts()) == 8732
    report = check_dataset(load_data_config(write_voc(tmp_path)), model=model, decode_images=False)
    coverage = report.splits[0].coverage
    assert coverage is not None and coverage.num_boxes == 5 and len(coverage.scales) == 6
    assert sum(s.share_best for s in coverage.scales) == pytest.approx(1.0)
    # the whole-image box of img_a is close to the 1x1 map's biggest prior (sqrt(0.88 * 1.05) = 0.96 wide)
    assert coverage.best_iou.quantiles["max"] > 0.9
    text = format_report(report)
    assert "default-box coverage" in text and "38x38" in text and "1x1" in text


def test_coverage_of_the_ssdlite_preset_by_name(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_check_data(str(write_voc(tmp_path)), ["train"], "ssdlite320_mobilenet_v3_large", as_json=True) == 0
    coverage = json.loads(capsys.readouterr().out)["splits"][0]["coverage"]
    sizes = [(s["feature_size"], s["num_priors"]) for s in coverage["scales"]]
    assert sizes == [(20, 2400), (10, 600), (5, 150), (3, 54), (2, 24), (1, 6)]  # 3234 in all, 6 per cell


def test_broken_dataset_gives_a_nonzero_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    yaml_path = write_voc(tmp_path)
    assert run_check_data(str(yaml_path), None, None, as_json=False) == 0
    out = capsys.readouterr().out
    assert "split train: 3 images (1 without objects), 5 boxes (1 difficult)" in out and "result: OK" in out
    xml = tmp_path / "VOC2007" / "Annotations" / "img_a.xml"
    xml.write_text(xml.read_text().replace("<name>dog</name>", "<name>dgo</name>"))
    image = tmp_path / "VOC2007" / "JPEGImages" / "img_b.jpg"
    image.write_bytes(image.read_bytes()[:50])
    assert run_check_data(str(yaml_path), ["train"], None, as_json=True) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is False
    texts = [p["text"] for p in result["problems"]]
    assert texts[0] == f"{xml}: object 2 (dgo): unknown class 'dgo' (classes: cat, dog, bird)"
    assert texts[1].startswith(f"{image}: cannot decode image")
    # statistics of what is left: img_c only (img_a left out, img_b undecodable)
    assert result["splits"][0]["num_images"] == 1 and result["splits"][0]["num_boxes"] == 0
    assert result["splits"][0]["size"] is None


def test_missing_split_and_missing_yaml_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    yaml_path = write_voc(tmp_path)
    assert run_check_data(str(yaml_path), ["val"], None, as_json=False) == 1
    assert "defines no 'val' split" in capsys.readouterr().out
    assert run_check_data(str(tmp_path / "none.yaml"), None, None, as_json=True) == 1
    assert "data YAML file not found" in capsys.readouterr().out


def test_fit_priors_prints_both_coverages_and_values_that_give_the_fitted_boxes(tmp_path, capsys):
    import yaml

    import ssd
    from data_helpers import TinyImage, write_voc

    images = [TinyImage(f"img{k}", k, 60, 80, [(5 + k, 20, 65 + k, 40)], [1 + k % 3]) for k in range(12)]  # 3:1
    data = write_voc(tmp_path, images)
    assert run_check_data(str(data), None, "shapes", as_json=False, fit=True) == 0
    out = capsys.readouterr().out
    assert "default boxes fitted:" in out and "   24x24 " in out  # the shapes config's maps, by its name
    snippet = out[out.index("paste into the config") :].split("\n", 1)[1]
    values = yaml.safe_load("\n".join(line[2:] for line in snippet.splitlines()))["model"]
    assert set(values) == {"min_sizes", "max_sizes", "scales", "aspect_ratios"}
    run_check_data(str(data), None, "shapes", as_json=True, fit=True)
    report = json.loads(capsys.readouterr().out)
    assert report["prior_fit"]["model"] == values
    assert report["prior_fit"]["after"]["share_iou50"] >= report["prior_fit"]["before"]["share_iou50"]
    from ssd.config import load_run_config

    run = load_run_config("shapes")
    model = ssd.build_model(run.preset, 4, **{**run.model, **values})  # the snippet is a valid model section
    assert model.config.min_sizes == values["min_sizes"]

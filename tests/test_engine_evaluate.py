"""predict_dataset: detections mapped back to each original image, empty batches skipped; run_evaluation leaves
unreadable images out and names them."""

import json

import pytest
import torch
import yaml

import ssd
from data_helpers import TINY_CLASSES, write_voc
from model_helpers import TINY_96
from ssd.engine.evaluate import predict_dataset, run_evaluation
from ssd.errors import SSDError


def test_predict_dataset_maps_boxes_back_and_skips_empty_batches():
    def detector(images):  # one box covering the warped image
        return [
            {
                "boxes": torch.tensor([[0.0, 0.0, 100.0, 100.0]]),
                "scores": torch.tensor([0.9]),
                "labels": torch.tensor([1]),
            }
            for _ in images
        ]

    image = torch.zeros(3, 100, 100)  # warped to 100 x 100; the original was 50 high, 200 wide
    target = {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "image_id": "a",
        "orig_size": torch.tensor([50, 200]),
    }
    twin = {**target, "image_id": "a"}  # same id, another image: both must be kept in one process
    loader = [([], []), ([image, image], [target, twin])]
    dets, targets = predict_dataset(detector, loader, torch.device("cpu"), progress=False)
    assert len(dets) == len(targets) == 2
    torch.testing.assert_close(dets[0]["boxes"], torch.tensor([[0.0, 0.0, 200.0, 50.0]]))


def test_an_unreadable_image_is_left_out_of_the_scores_and_named(tmp_path, capsys):
    data = write_voc(tmp_path)  # img_a, img_b, img_c
    folder = tmp_path / "VOC2007"
    (folder / "ImageSets" / "Main" / "rest.txt").write_text("img_a\nimg_c\n")
    rest = tmp_path / "rest.yaml"
    rest.write_text(yaml.safe_dump({**yaml.safe_load(data.read_text()), "test": "VOC2007/rest"}))
    broken = folder / "JPEGImages" / "img_b.jpg"
    broken.write_bytes(broken.read_bytes()[:150])
    weights = tmp_path / "tiny.pt"
    ssd.save(ssd.build_model("ssd300_vgg16", 4, class_names=["__background__", *TINY_CLASSES], **TINY_96), weights)

    options = dict(metrics=("voc07",), batch_size=2, workers=1, device="cpu", progress=False)  # found in a worker
    with_broken = run_evaluation(str(weights), str(data), split="train", out_dir=tmp_path / "a", **options)
    assert "1 of 3 images could not be read and are left out" in capsys.readouterr().out
    assert json.loads((tmp_path / "a" / "unreadable_images.json").read_text()) == [str(broken)]
    without = run_evaluation(str(weights), str(rest), split="test", out_dir=tmp_path / "b", **options)
    assert with_broken["voc07"]["map"] == without["voc07"]["map"]
    assert with_broken["voc07"]["num_gt"] == without["voc07"]["num_gt"]  # img_b's objects are not counted missed
    assert not (tmp_path / "b" / "unreadable_images.json").exists()

    (folder / "ImageSets" / "Main" / "only_b.txt").write_text("img_b\n")
    rest.write_text(yaml.safe_dump({**yaml.safe_load(data.read_text()), "test": "VOC2007/only_b"}))
    with pytest.raises(SSDError, match="none of the 1 images of split 'test' could be read"):
        run_evaluation(str(weights), str(rest), split="test", out_dir=tmp_path / "c", **options)

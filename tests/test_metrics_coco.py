"""COCO metrics: the same numbers as pycocotools run by hand, crowd handling, category id mapping, both backends."""

import contextlib
import io
import logging
import sys

import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ssd.metrics import STAT_NAMES, evaluate, to_coco_results
from ssd.metrics.coco import BACKENDS, coco_backend, coco_evaluate

LABEL_TO_CATEGORY = {1: 1, 2: 3, 3: 90}  # contiguous labels -> COCO-style ids with gaps


def _installed(backend):
    if backend == "faster-coco-eval":
        pytest.importorskip("faster_coco_eval")  # in the test extra: runs in CI
    return backend


@pytest.fixture(params=BACKENDS)
def backend(request):
    return _installed(request.param)


def det(boxes, scores, labels):
    labels = torch.tensor(labels, dtype=torch.int64)
    return {"boxes": torch.as_tensor(boxes), "scores": torch.tensor(scores), "labels": labels}


def random_split(num_images, seed):
    """Boxes of all three COCO size ranges, some crowd regions, detections near and far from them."""
    g = torch.Generator().manual_seed(seed)
    detections, targets = [], []
    for _ in range(num_images):
        n_gt = int(torch.randint(0, 6, (1,), generator=g))
        xy = torch.rand(n_gt, 2, generator=g) * 300
        wh = torch.tensor([8.0, 40.0, 150.0])[torch.randint(0, 3, (n_gt,), generator=g)][:, None]
        wh = wh * (0.7 + 0.6 * torch.rand(n_gt, 2, generator=g))
        boxes = torch.cat([xy, xy + wh], 1)
        labels = torch.randint(1, 4, (n_gt,), generator=g)
        targets.append({"boxes": boxes, "labels": labels, "iscrowd": torch.rand(n_gt, generator=g) < 0.15})
        n_det = int(torch.randint(0, 15, (1,), generator=g))
        src = torch.randint(0, max(n_gt, 1), (n_det,), generator=g)
        base = boxes[src] if n_gt else torch.tensor([[10.0, 10, 60, 60]]).expand(n_det, 4)
        dboxes = base + torch.randn(n_det, 4, generator=g) * 4
        dlabels = labels[src] if n_gt else torch.randint(1, 4, (n_det,), generator=g)
        dlabels = torch.where(torch.rand(n_det, generator=g) < 0.2, torch.randint(1, 4, (n_det,), generator=g), dlabels)
        detections.append({"boxes": dboxes, "scores": torch.rand(n_det, generator=g), "labels": dlabels})
    return detections, targets


def pycocotools_by_hand(detections, targets, mapping):
    """COCO json dicts written out here, evaluated the usual way (loadRes + COCOeval)."""
    images, annotations, results = [], [], []
    for image_id, (d, t) in enumerate(zip(detections, targets)):
        images.append({"id": image_id, "width": 500, "height": 500})
        for (x1, y1, x2, y2), label, crowd in zip(t["boxes"].tolist(), t["labels"].tolist(), t["iscrowd"].tolist()):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": mapping[label],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": int(crowd),
                }  # fmt: skip
            )
        for (x1, y1, x2, y2), score, label in zip(d["boxes"].tolist(), d["scores"].tolist(), d["labels"].tolist()):
            bbox = [x1, y1, x2 - x1, y2 - y1]
            results.append({"image_id": image_id, "category_id": mapping[label], "bbox": bbox, "score": score})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        categories = [{"id": c} for c in mapping.values()]
        gt.dataset = {"images": images, "annotations": annotations, "categories": categories}
        gt.createIndex()
        coco_eval = COCOeval(gt, gt.loadRes(results), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        coco_eval.summarize()
    coco_eval.printed = printed.getvalue()
    return coco_eval


@pytest.mark.parametrize("seed", [0, 1])
def test_same_numbers_as_pycocotools(seed):
    detections, targets = random_split(30, seed)
    reference = pycocotools_by_hand(detections, targets, LABEL_TO_CATEGORY)
    result = evaluate(detections, targets, "coco", label_to_category_id=LABEL_TO_CATEGORY, backend="pycocotools")
    for name, value in zip(STAT_NAMES, reference.stats):
        assert result[name] == pytest.approx(value, abs=1e-12), name
    assert result["map"] > 0.05  # the data gives real matches, not an all-zero comparison
    # per class: mean of COCOeval's precision[T, R, K, area all, maxDets 100] where defined
    for k, category_id in enumerate(reference.params.catIds):
        values = reference.eval["precision"][:, :, k, 0, -1]
        label = {c: lab for lab, c in LABEL_TO_CATEGORY.items()}[category_id]
        assert result["per_class"][label] == pytest.approx(values[values > -1].mean(), abs=1e-12)
    non_crowd = torch.cat([t["labels"][~t["iscrowd"]] for t in targets])
    assert result["num_gt"] == {label: int((non_crowd == label).sum()) for label in (1, 2, 3)}
    assert result["summary"] == reference.printed
    assert result["coco_backend"] == "pycocotools"


def backend_split(num_images, seed):
    """Five classes (label 5 detected, never in the ground truth), crowd regions, objects of all three sizes with
    a given ``area`` (a segment area below the box area, which moves some across the size limits), images with no
    detection and images with no ground truth."""
    g = torch.Generator().manual_seed(seed)
    detections, targets = [], []
    for _ in range(num_images):
        n_gt = int(torch.randint(0, 8, (1,), generator=g))
        xy = torch.rand(n_gt, 2, generator=g) * 400
        side = torch.tensor([12.0, 30.0, 60.0, 140.0])[torch.randint(0, 4, (n_gt,), generator=g)][:, None]
        boxes = torch.cat([xy, xy + side * (0.6 + 0.8 * torch.rand(n_gt, 2, generator=g))], 1)
        box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        targets.append(
            {
                "boxes": boxes,
                "labels": torch.randint(1, 5, (n_gt,), generator=g),
                "iscrowd": torch.rand(n_gt, generator=g) < 0.1,
                "area": box_area * (0.5 + 0.5 * torch.rand(n_gt, generator=g)),
            }  # fmt: skip
        )
        n_det = 0 if torch.rand(1, generator=g) < 0.2 else int(torch.randint(1, 25, (1,), generator=g))
        src = torch.randint(0, max(n_gt, 1), (n_det,), generator=g)
        base = boxes[src] if n_gt else torch.tensor([[50.0, 50, 120, 120]]).expand(n_det, 4)
        labels = targets[-1]["labels"][src] if n_gt else torch.randint(1, 6, (n_det,), generator=g)
        wrong = torch.rand(n_det, generator=g) < 0.25
        labels = torch.where(wrong, torch.randint(1, 6, (n_det,), generator=g), labels)
        detections.append(
            {
                "boxes": base + torch.randn(n_det, 4, generator=g) * (base[:, 2:] - base[:, :2]).repeat(1, 2) * 0.08,
                "scores": torch.rand(n_det, generator=g),
                "labels": labels,
            }  # fmt: skip
        )
    return detections, targets


@pytest.mark.parametrize("seed", [0, 1])
def test_backends_give_the_same_numbers(seed, capsys, caplog):
    _installed("faster-coco-eval")
    caplog.set_level(logging.DEBUG)
    detections, targets = backend_split(300, seed)
    mapping = {1: 1, 2: 3, 3: 7, 4: 42, 5: 90}
    fast, reference = (
        coco_evaluate(detections, targets, label_to_category_id=mapping, backend=b)
        for b in ("faster-coco-eval", "pycocotools")
    )
    assert (fast["coco_backend"], reference["coco_backend"]) == ("faster-coco-eval", "pycocotools")
    for name in STAT_NAMES:
        assert fast[name] == pytest.approx(reference[name], abs=1e-4), name
    assert all(reference[name] > 0.05 for name in STAT_NAMES)  # real matches in every size range
    assert fast["per_class"] == pytest.approx(reference["per_class"], abs=1e-4)
    assert fast["per_class"][5] is None and reference["per_class"][5] is None  # no ground truth
    assert fast["num_gt"] == reference["num_gt"] and fast["summary"] == reference["summary"]
    assert any(len(d["scores"]) == 0 for d in detections) and any(len(t["labels"]) == 0 for t in targets)
    assert capsys.readouterr().out == "" and not caplog.records  # nothing printed or logged


def test_backend_choice(monkeypatch):
    detections, targets = random_split(10, 0)
    for name in ("pycocotools", "faster-coco-eval"):
        assert evaluate(detections, targets, "coco", backend=_installed(name))["coco_backend"] == name
        assert coco_backend(name) == name
    assert coco_backend() == "faster-coco-eval"  # auto: the fast one when installed
    with pytest.raises(ValueError, match="unknown COCO backend 'fast': choose auto, faster-coco-eval, pycocotools"):
        evaluate(detections, targets, "coco", backend="fast")
    # without faster-coco-eval: auto falls back to pycocotools, asking for it explicitly is an error
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)
    monkeypatch.setitem(sys.modules, "faster_coco_eval.core", None)
    assert evaluate(detections, targets, "coco")["coco_backend"] == "pycocotools"
    with pytest.raises(
        ValueError, match=r"'faster-coco-eval' is not installed \(pip install ssd-detector\[fast-eval\]\)"
    ):
        coco_evaluate(detections, targets, backend="faster-coco-eval")


def test_crowd_region_detection_is_ignored(backend):
    # GT: a 100x100 box A and a crowd region C. Detection 1 (0.9) lies inside C: against a crowd region
    # IoU = intersection / detection area = 1 -> matched to an ignored GT -> ignored. Detection 2 (0.8) = A -> TP.
    # AP = 1 at every threshold. Without the crowd flag, C is a second positive and detection 1 a FP
    # ranked first (IoU with C = 2500 / 40000); A is found at precision 1/2, recall 1/2, so of COCO's
    # 101 recall points 0, .01, .., .5 get precision 1/2 and the rest 0: AP@0.5 = 51 * 0.5 / 101.
    box_a, crowd, inside = [0.0, 0, 100, 100], [200.0, 200, 400, 400], [250.0, 250, 300, 300]
    detections = [det([inside, box_a], [0.9, 0.8], [1, 1])]
    targets = [{"boxes": torch.tensor([box_a, crowd]), "labels": torch.tensor([1, 1])}]
    targets[0]["iscrowd"] = torch.tensor([False, True])
    result = evaluate(detections, targets, "coco", backend=backend)
    assert result["map"] == pytest.approx(1.0)
    assert result["num_gt"] == {1: 1}
    # A is 10000 px > 96^2: large; nothing small or medium -> undefined, -1 as pycocotools prints
    assert result["map_large"] == pytest.approx(1.0)
    assert result["map_small"] == -1.0 and result["map_medium"] == -1.0
    targets[0]["iscrowd"] = torch.tensor([False, False])
    assert evaluate(detections, targets, "coco", backend=backend)["map50"] == pytest.approx(51 * 0.5 / 101)


def test_target_area_overrides_box_area(backend):
    # A 100x100 box whose segment area is 500 px counts as small (< 32^2), as in COCO's own annotations.
    box = [0.0, 0, 100, 100]
    detections = [det([box], [0.9], [1])]
    targets = [{"boxes": torch.tensor([box]), "labels": torch.tensor([1]), "area": torch.tensor([500.0])}]
    result = evaluate(detections, targets, "coco", backend=backend)
    assert result["map_small"] == pytest.approx(1.0)
    assert result["map_large"] == -1.0


def test_to_coco_results_maps_labels_and_converts_boxes():
    detections = [
        det([[10.0, 20, 30, 60]], [0.5], [3]),
        det([[0.0, 0, 1, 2], [5, 5, 6, 8]], [0.25, 0.75], [1, 2]),
    ]
    results = to_coco_results(detections, [42, 7], LABEL_TO_CATEGORY)
    assert results == [
        {"image_id": 42, "category_id": 90, "bbox": [10.0, 20.0, 20.0, 40.0], "score": 0.5},
        {"image_id": 7, "category_id": 1, "bbox": [0.0, 0.0, 1.0, 2.0], "score": 0.25},
        {"image_id": 7, "category_id": 3, "bbox": [5.0, 5.0, 1.0, 3.0], "score": 0.75},
    ]
    assert to_coco_results(detections, [42, 7])[0]["category_id"] == 3  # no mapping: the label itself
    with pytest.raises(ValueError, match=r"labels \[3\]"):
        to_coco_results(detections, [42, 7], {1: 1, 2: 3})


def test_mapping_round_trip_reports_contiguous_labels(backend):
    # Label 3 <-> category 90: a perfect detection for label 3 only. per_class comes back under labels.
    box = [0.0, 0, 50, 50]
    detections = [det([box], [0.9], [3])]
    targets = [{"boxes": torch.tensor([box, box]), "labels": torch.tensor([3, 2])}]
    result = coco_evaluate(detections, targets, label_to_category_id=LABEL_TO_CATEGORY, backend=backend)
    assert result["per_class"] == {1: None, 2: 0.0, 3: pytest.approx(1.0)}
    assert result["map"] == pytest.approx(0.5)  # mean over the categories with ground truth


def test_no_detections_at_all(backend):
    targets = [{"boxes": torch.tensor([[0.0, 0, 50, 50]]), "labels": torch.tensor([1])}]
    detections = [det(torch.zeros(0, 4), [], [])]
    result = evaluate(detections, targets, "coco", class_names=["__background__", "a", "b"], backend=backend)
    assert result["per_class"] == {1: 0.0, 2: None}
    assert result["map"] == 0.0 and result["mar_100"] == 0.0

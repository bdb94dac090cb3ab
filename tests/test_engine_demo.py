"""`ssd demo` shortened: the same code path (generate, train, evaluate, draw) on a few small images."""

import json

import pytest

from model_helpers import TINY_128
from report_helpers import check_report
from ssd.engine.demo import run_demo

SMALL_SHAPES = dict(num_train=8, num_val=4, num_test=4, image_size=96, num_workers=1)
SHORT_RUN = ["train.iterations=2", "train.batch_size=4", "train.workers=0", "train.eval_interval=0",
             *(f"model.{key}={json.dumps(value)}" for key, value in TINY_128.items())]  # fmt: skip


def test_demo_writes_the_promised_outputs(tmp_path):
    out = tmp_path / "runs" / "demo"
    out.mkdir(parents=True)
    (out / "stale.txt").write_text("from an earlier demo")
    summary = run_demo(tmp_path / "shapes", out, overrides=SHORT_RUN, device="cpu", progress=False, shapes=SMALL_SHAPES)

    assert summary["iterations"] == 2 and not (out / "stale.txt").exists()  # the run folder is replaced
    assert summary == json.loads((out / "demo_summary.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["voc07"]["map"] == summary["voc07_map"] and metrics["coco"]["map"] == summary["coco_map"]
    # 2 iterations learn nothing measurable: the checks are that the report holds best.pt's detections in image
    # pixels and that its mAP is theirs
    recomputed = check_report(out, out / "best.pt", tmp_path / "shapes" / "shapes.yaml", "test")
    assert summary["voc07_map"] == pytest.approx(recomputed["map"], abs=1e-12)
    assert set(metrics["voc07"]["per_class"]) == {"circle", "square", "triangle", "star", "ellipse", "cross"}
    for name in ("best.pt", "last.pt", "loss.png", "pr_curves.png", "confusion_matrix.png", "config.yaml"):
        assert (out / name).stat().st_size > 0, name
    assert len(list((out / "predictions").glob("*.jpg"))) == SMALL_SHAPES["num_test"]
    test_ids = (tmp_path / "shapes" / "SHAPES" / "ImageSets" / "Main" / "test.txt").read_text().split()
    assert (
        len(test_ids) == 4
        and len((tmp_path / "shapes" / "SHAPES" / "ImageSets" / "Main" / "train.txt").read_text().split()) == 8
    )

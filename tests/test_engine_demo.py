"""`ssd demo` shortened: the same code path (generate, train, evaluate, draw) on a few small images."""

import json

from ssd.engine.demo import run_demo

SMALL_SHAPES = dict(num_train=8, num_val=4, num_test=4, image_size=96, num_workers=1)
SHORT_RUN = ["train.iterations=2", "train.batch_size=4", "train.workers=0", "train.eval_interval=0",
             "model.input_size=128", "model.extras=[[256,512,3,2,1],[128,256,3,2,1],[128,256,3,2,1]]",
             "model.min_sizes=[7,16,36,60,85]", "model.max_sizes=[16,36,60,85,115]"]  # fmt: skip


def test_demo_writes_the_promised_outputs(tmp_path):
    out = tmp_path / "runs" / "demo"
    out.mkdir(parents=True)
    (out / "stale.txt").write_text("from an earlier demo")
    summary = run_demo(tmp_path / "shapes", out, overrides=SHORT_RUN, device="cpu", progress=False, shapes=SMALL_SHAPES)

    assert summary["iterations"] == 2 and not (out / "stale.txt").exists()  # the run folder is replaced
    assert summary == json.loads((out / "demo_summary.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["voc07"]["map"] <= 1.0 and metrics["voc07"]["map"] == summary["voc07_map"]
    assert set(metrics["voc07"]["per_class"]) == {"circle", "square", "triangle", "star", "ellipse", "cross"}
    for name in ("best.pt", "last.pt", "loss.png", "pr_curves.png", "confusion_matrix.png", "config.yaml"):
        assert (out / name).stat().st_size > 0, name
    assert len(list((out / "predictions").glob("*.jpg"))) == SMALL_SHAPES["num_test"]
    test_ids = (tmp_path / "shapes" / "SHAPES" / "ImageSets" / "Main" / "test.txt").read_text().split()
    assert (
        len(test_ids) == 4
        and len((tmp_path / "shapes" / "SHAPES" / "ImageSets" / "Main" / "train.txt").read_text().split()) == 8
    )

"""The ``ssd`` command: every subcommand's help, one-line errors, and eval/predict/check-data end to end."""

import json

import pytest

import ssd
from model_helpers import TINY_96
from report_helpers import check_report
from ssd.cli import build_parser, main
from ssd.data.shapes import generate_shapes
from ssd.metrics import coco_backend

SUBCOMMANDS = ["train", "eval", "predict", "serve", "export", "check-data", "demo"]


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_has_a_useful_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert f"usage: ssd {command}" in text and len(text) > 300


def test_errors_are_one_line_with_the_path(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {tmp_path / 'missing.yaml'}: config file not found"
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {iterations: 10, learning_rate: 0.1}\n")
    assert main(["train", "--config", str(bad), "--data", "x.yaml"]) == 2
    assert "unknown key(s) learning_rate" in capsys.readouterr().err


def test_parser_knows_all_subcommands():
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert sorted(choices) == sorted(SUBCOMMANDS)


@pytest.fixture(scope="module")
def dataset_and_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = generate_shapes(root / "shapes", num_train=4, num_val=0, num_test=6, image_size=64, num_workers=1)
    names = ["__background__", "circle", "square", "triangle", "star", "ellipse", "cross"]
    model = ssd.build_model("ssd300_vgg16", 7, class_names=names, **TINY_96)
    weights = root / "model.pt"
    ssd.save(model, weights)
    return data, weights, root


def test_eval_writes_metrics_and_report(dataset_and_model, tmp_path, capsys):
    data, weights, _ = dataset_and_model
    out = tmp_path / "eval"
    code = main(["eval", "--weights", str(weights), "--data", str(data), "--split", "test", "--metric", "voc07,coco",
                 "--out", str(out), "--workers", "0", "--no-progress"])  # fmt: skip
    assert code == 0
    table = capsys.readouterr().out
    assert "circle" in table and "mean" in table
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"voc07", "coco"}
    assert set(metrics["voc07"]["per_class"]) == {"circle", "square", "triangle", "star", "ellipse", "cross"}
    assert "map50" in metrics["coco"]
    assert metrics["coco"]["coco_backend"] == coco_backend()  # auto: faster-coco-eval with the test extra
    # the untrained model scores near 0: the checks are that the report holds the model's detections in image pixels
    # and that its mAP is theirs
    recomputed = check_report(out, weights, data, "test")
    assert metrics["voc07"]["map"] == pytest.approx(recomputed["map"], abs=1e-12)
    assert list(metrics["voc07"]["per_class"].values()) == pytest.approx(list(recomputed["per_class"].values()))
    for name in ("detections_coco.json", "pr_curves.png", "confusion_matrix.png"):
        assert (out / name).stat().st_size > 0
    results = json.loads((out / "detections_coco.json").read_text())
    assert results and set(results[0]) == {"image_id", "category_id", "bbox", "score"}


def test_eval_refuses_a_model_with_other_classes(dataset_and_model, tmp_path, capsys):
    data, _, root = dataset_and_model
    other = root / "other.pt"
    ssd.save(ssd.build_model("ssd300_vgg16", 3, class_names=["__background__", "a", "b"], **TINY_96), other)
    assert main(["eval", "--weights", str(other), "--data", str(data), "--out", str(tmp_path), "--workers", "0"]) == 2
    assert "differ from the dataset" in capsys.readouterr().err


def test_predict_on_a_folder(dataset_and_model, tmp_path):
    data, weights, root = dataset_and_model
    images = root / "shapes" / "SHAPES" / "JPEGImages"
    out = tmp_path / "pred"
    assert (
        main(["predict", str(images), "--weights", str(weights), "--out", str(out), "--max-det", "3", "--no-progress"])
        == 0
    )
    entries = json.loads((out / "predictions.json").read_text())
    assert len(entries) == 10 and all(len(e["scores"]) <= 3 for e in entries)
    assert len(list(out.glob("*.jpg"))) == 10


def test_predict_skips_unreadable_files_and_its_exit_status_says_what_was_read(dataset_and_model, tmp_path, capsys):
    _, weights, root = dataset_and_model
    good = root / "shapes" / "SHAPES" / "JPEGImages" / "test_000000.jpg"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(good.read_bytes()[:300])
    args = ["predict", str(good), str(broken), "--weights", str(weights), "--no-progress", "--no-save"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert f"1 images, 1 skipped ({broken}: cannot decode image" in out and "detections; results in" in out
    assert len(json.loads((tmp_path / "a" / "predictions.json").read_text())) == 1
    assert main([*args, "--out", str(tmp_path / "b"), "--strict"]) == 1  # everything written, then status 1
    assert len(json.loads((tmp_path / "b" / "predictions.json").read_text())) == 1
    capsys.readouterr()
    assert main(["predict", str(broken), "--weights", str(weights), "--no-progress", "--out", str(tmp_path / "c")]) == 2
    assert f"error: {broken}: cannot decode image" in capsys.readouterr().err


def test_predict_in_bf16_and_fp16_needs_cuda(dataset_and_model, tmp_path, capsys):
    _, weights, root = dataset_and_model
    image = root / "shapes" / "SHAPES" / "JPEGImages" / "test_000000.jpg"
    out = tmp_path / "bf16"
    args = ["predict", str(image), "--weights", str(weights), "--no-progress", "--no-save"]
    assert main([*args, "--out", str(out), "--precision", "bf16"]) == 0
    assert len(json.loads((out / "predictions.json").read_text())) == 1
    assert main([*args, "--out", str(tmp_path / "fp16"), "--precision", "fp16", "--device", "cpu"]) == 2
    assert "fp16 needs a CUDA device" in capsys.readouterr().err


def test_check_data_exit_status(dataset_and_model, capsys):
    data, _, _ = dataset_and_model
    assert main(["check-data", str(data), "--model", "none"]) == 0
    assert "circle" in capsys.readouterr().out


def test_resume_refuses_changes(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path), "train.iterations=10"]) == 2
    assert "--resume continues a run exactly" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "called"),
    [
        (["train", "--config", "missing.yaml"], True),
        (["eval", "--weights", "missing.pt", "--data", "missing.yaml"], True),
        (["predict", "--weights", "missing.pt", "missing.jpg"], True),
        (["check-data", "missing.yaml"], False),  # runs no model
    ],
)
def test_commands_that_run_models_keep_freed_memory(argv, called, monkeypatch, tmp_path):
    from ssd import cli

    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(1) or True)
    monkeypatch.chdir(tmp_path)
    assert main(argv) != 0  # every file is missing: an error, after the allocator set-up
    assert bool(calls) == called

"""Short training runs on a tiny shapes dataset: run folder, exact resume, NaN stop, fine-tuning, 2-process DDP."""

import json
import logging
import os
import random
import shutil
import signal
from itertools import islice
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import ssd
from data_helpers import (
    TinyImage,
    write_cvat,
    write_labelimg,
    write_labelme,
    write_roboflow_coco,
    write_roboflow_yolo,
    write_voc,
)
from model_helpers import TINY_96, TINY_128
from process_helpers import free_port, join_within
from ssd.checkpoint import load_matching_weights
from ssd.config import run_config_from_dict
from ssd.data import build_dataset, load_data_config
from ssd.data.shapes import generate_shapes
from ssd.data.transforms import AugmentedDataset, EvalTransform
from ssd.engine import train as train_module
from ssd.engine.distributed import DistInfo
from ssd.engine.evaluate import run_evaluation
from ssd.engine.run_log import LOG_INTERVAL
from ssd.engine.state import TrainState
from ssd.engine.train import SYNC_INTERVAL, train
from ssd.errors import SSDError


@pytest.fixture(scope="module")
def shapes_yaml(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return str(generate_shapes(root, num_train=24, num_val=6, num_test=0, image_size=64, num_workers=1))


def tiny_run(data, **train_overrides):
    train_cfg = {
        "iterations": 6, "batch_size": 4, "base_batch_size": 4, "lr": 0.001, "milestones": [4], "warmup_iters": 2,
        "workers": 0, "eval_interval": 0, "checkpoint_interval": 100, "val_split": "test",  # no test split: no eval
    }  # fmt: skip
    train_cfg.update(train_overrides)
    return run_config_from_dict(
        {"preset": "ssd300_vgg16", "model": dict(TINY_96), "train": train_cfg, "data": data}, "test"
    )


def test_run_folder_holds_checkpoints_metrics_and_plots(shapes_yaml, tmp_path):
    run = tiny_run(shapes_yaml, val_split="val", eval_interval=3)
    result = train(run, project=tmp_path, name="r", progress=False)
    folder = tmp_path / "r"
    assert result.run_dir == folder and result.iterations == 6 and not result.interrupted
    for name in ("config.yaml", "last.pt", "best.pt", "metrics.csv", "loss.png", "map.png"):
        assert (folder / name).is_file(), name
    assert any((folder / "tensorboard").iterdir())
    rows = (folder / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("iteration,") and [r.split(",")[0] for r in rows[1:]] == ["3", "6"]
    model = ssd.load(folder / "last.pt")
    assert model.config.class_names[1:] == ["circle", "square", "triangle", "star", "ellipse", "cross"]
    # 6 iterations learn nothing measurable: the checks are that best_map is the best evaluation of the run and that
    # best.pt holds the weights that scored it
    last, best = (torch.load(folder / n, weights_only=False) for n in ("last.pt", "best.pt"))
    maps = [m for _, m in last["history"]["map"]]
    assert [r.split(",")[-1] for r in rows[1:]] == [f"{m:.5f}" for m in maps]
    assert result.best_map == max(maps) == best["best_map"] == last["best_map"]
    assert best["iteration"] == last["history"]["map"][maps.index(max(maps))][0]
    rescored = run_evaluation(str(folder / "best.pt"), shapes_yaml, split="val", batch_size=4, workers=0,
                              device="cpu", out_dir=tmp_path / "eval", progress=False)  # fmt: skip
    assert rescored["voc07"]["map"] == pytest.approx(result.best_map, abs=1e-12)
    # a second run without a name gets the next numbered folder; the same name is refused
    with pytest.raises(SSDError, match="already exists"):
        train(run, project=tmp_path, name="r", progress=False)


def interrupt_at_step(monkeypatch: pytest.MonkeyPatch, step: int):
    """Send this process SIGINT (Ctrl-C) during training step ``step``; returns the real function to restore."""
    calls = {"n": 0}
    real_step = train_module.train_step

    def interrupting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == step:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", interrupting)
    return real_step


def test_interrupted_and_resumed_run_equals_uninterrupted(shapes_yaml, tmp_path, monkeypatch):
    straight = train(tiny_run(shapes_yaml), project=tmp_path, name="straight", progress=False)
    expected = torch.load(straight.run_dir / "last.pt", weights_only=True)["model"]

    real_move = interrupt_at_step(monkeypatch, 3)  # Ctrl-C during step 3: last.pt is written after it
    stopped = train(tiny_run(shapes_yaml), project=tmp_path, name="resumed", progress=False)
    assert stopped.interrupted and stopped.iterations == 3
    monkeypatch.setattr(train_module, "train_step", real_move)
    resumed = train(tiny_run(shapes_yaml), resume=stopped.run_dir, progress=False)
    assert resumed.iterations == 6 and resumed.run_dir == stopped.run_dir
    got = torch.load(resumed.run_dir / "last.pt", weights_only=True)["model"]
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0, msg=key)


def test_time_driven_schedule_decays_to_zero_by_the_time_limit(shapes_yaml, tmp_path):
    """With schedule_by_time, a run stopped by max_minutes (1.2 s here) has finished its decay: lr 0 at the end."""
    run = tiny_run(shapes_yaml, iterations=100_000, schedule="wsd", max_minutes=0.02, schedule_by_time=True)
    result = train(run, project=tmp_path, name="timed", progress=False)
    assert 1 <= result.iterations < 100_000 and not result.interrupted
    state = torch.load(result.run_dir / "last.pt", weights_only=False)
    assert state["scheduler"]["last_epoch"] == result.iterations
    assert state["train_seconds"] > 0.02 * 60
    assert all(group["lr"] == 0.0 for group in state["optimizer"]["param_groups"])


def test_training_time_counts_on_across_a_resume(shapes_yaml, tmp_path, monkeypatch):
    """max_minutes sees the training time of all sessions: the resumed run's clock starts at the seconds saved in
    last.pt (set to 50 of the 60 allowed minutes here; at 70 there is nothing left to resume)."""
    run = tiny_run(shapes_yaml, schedule="cosine", max_minutes=60, schedule_by_time=True)
    real_move = interrupt_at_step(monkeypatch, 3)  # Ctrl-C during step 3: last.pt is written after it
    stopped = train(run, project=tmp_path, name="clock", progress=False)
    monkeypatch.setattr(train_module, "train_step", real_move)
    last = stopped.run_dir / "last.pt"
    state = torch.load(last, weights_only=False)
    assert state["scheduler"]["last_epoch"] == 3 and 0 < state["train_seconds"] < 60

    state["train_seconds"] = 50 * 60.0
    torch.save(state, last)
    resumed = train(run, resume=stopped.run_dir, progress=False)
    final = torch.load(last, weights_only=False)
    assert resumed.iterations == 6 and 50 * 60 < final["train_seconds"] < 51 * 60

    state["train_seconds"] = 70 * 60.0  # past the limit: the run is finished, and resuming says so
    torch.save(state, last)
    with pytest.raises(SSDError, match=r"already trained for its train.max_minutes \(60\).*--weights"):
        train(run, resume=stopped.run_dir, progress=False)


def test_non_finite_loss_stops_with_a_message(shapes_yaml, tmp_path):
    run = tiny_run(shapes_yaml, lr=1e12, warmup_iters=0, iterations=20)
    with pytest.raises(SSDError, match=r"not finite at iteration \d+.*learning rate"):
        train(run, project=tmp_path, name="nan", progress=False)


def reference_weights(run) -> dict[str, torch.Tensor]:
    """The weights after ``run.train.iterations`` steps of a plain loop (forward, loss sum, backward, update,
    schedule step), set up from the same seed, data, model and optimizer as ``train``."""
    cfg, info = run.train, DistInfo()
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    data_cfg = load_data_config(run.data)
    train_set = build_dataset(data_cfg, cfg.train_split, keep_difficult=cfg.keep_difficult, skip_bad=cfg.skip_bad)
    model = train_module.build_training_model(run, train_set.class_names, info)
    data = train_module.build_training_data(run, data_cfg, train_set, model, info)
    state = TrainState.create(run, model, info.device)
    model.train()
    for images, targets in islice(train_module.batches(data.train, 0), cfg.iterations):
        losses = model(images, [{k: t[k] for k in ("boxes", "labels")} for t in targets])
        state.optimizer.zero_grad(set_to_none=True)
        (losses["loc"] + losses["conf"]).backward()
        state.optimizer.step()
        state.scheduler.step()
    return model.state_dict()


def test_the_loop_trains_the_weights_of_a_plain_loop(shapes_yaml, tmp_path):
    """14 steps over 2 epochs, through a log read, a checkpoint, the learning-rate warm-up and a milestone."""
    run = tiny_run(shapes_yaml, iterations=14, checkpoint_interval=5, milestones=[9])
    result = train(run, project=tmp_path, name="loop", progress=False)
    got = torch.load(result.run_dir / "last.pt", weights_only=True)["model"]
    expected = reference_weights(tiny_run(shapes_yaml, iterations=14, checkpoint_interval=5, milestones=[9]))
    initial = ssd.build_model("ssd300_vgg16", 7, **TINY_96).state_dict()
    assert (expected["net.head.conf.0.weight"] - initial["net.head.conf.0.weight"]).abs().max() > 1e-3
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0, msg=key)


def test_a_training_step_reads_no_loss_value_to_the_host(shapes_yaml, tmp_path, monkeypatch):
    """A read (float, item, tolist) would make the host wait for the GPU at every step."""
    reads = []
    real_step = train_module.train_step

    def watched_step(*args, **kwargs):
        with monkeypatch.context() as patched:
            for name in ("__float__", "item", "tolist"):
                real = getattr(torch.Tensor, name)
                patched.setattr(torch.Tensor, name, lambda t, *a, _n=name, _r=real: reads.append(_n) or _r(t, *a))
            return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", watched_step)
    assert train(tiny_run(shapes_yaml, iterations=3), project=tmp_path, name="r", progress=False).iterations == 3
    assert reads == []


def poison_batch(monkeypatch: pytest.MonkeyPatch, iteration: int) -> None:
    """Make the images of training step ``iteration`` infinite, so that its loss is not finite."""
    real_batches = train_module.batches

    def poisoned(loader, first_iteration):
        for k, (images, targets) in enumerate(real_batches(loader, first_iteration), first_iteration + 1):
            yield ([torch.full_like(img, float("inf")) for img in images] if k == iteration else images), targets

    monkeypatch.setattr(train_module, "batches", poisoned)


@pytest.mark.parametrize("checkpoint_interval", [5, 8])
def test_a_non_finite_loss_between_reads_stops_the_run_naming_its_iteration(
    shapes_yaml, tmp_path, monkeypatch, checkpoint_interval
):
    """Step 7's loss is read at the checkpoint of step 8 (nothing saved) or at the log line of step 10 (last.pt
    stays the finite one of step 5): either way the message names step 7 and its learning rate (after the
    milestone at 4), not those of the step that read it."""
    assert LOG_INTERVAL == 10  # the steps here are chosen for it
    poison_batch(monkeypatch, 7)
    run = tiny_run(shapes_yaml, iterations=12, checkpoint_interval=checkpoint_interval)
    with pytest.raises(SSDError, match=r"not finite at iteration 7 \(loc=nan, conf=nan, total=nan, lr=0.0001\)"):
        train(run, project=tmp_path, name="nan", progress=False)
    last = tmp_path / "nan" / "last.pt"
    if checkpoint_interval == 8:
        assert not last.exists()
    else:
        saved = torch.load(last, weights_only=True)
        assert saved["iteration"] == 5 and all(v.isfinite().all() for v in saved["model"].values())


def batch_norm_run(data, **train_overrides):
    """A tiny batch-norm SSD (TINY_128, down to a 1x1 map) trained for 2 steps of 2 images on ``data``."""
    settings = dict(iterations=2, batch_size=2, base_batch_size=2, milestones=[], seed=5)
    run = tiny_run(data, **{**settings, **train_overrides})
    run.model = dict(TINY_128)
    return run


def test_an_unreadable_image_is_replaced_and_the_run_equals_one_on_its_substitute(tmp_path, caplog):
    """4 images, batches of 2: a skipped image would leave a batch of one, which batch norm refuses. Replaced, the
    run trains exactly as it would on a dataset where the broken image is a copy of its substitute."""
    images = [TinyImage(f"img{k}", k, 40, 48, [(4, 6, 30 + k, 34)], [1 + k % 3]) for k in range(4)]
    runs = {}
    for name in ("broken", "copied"):
        runs[name] = (tmp_path / name / "data.yaml", tmp_path / name / "VOC2007")
        write_voc(tmp_path / name, images)
    broken_yaml, broken_root = runs["broken"]
    (broken_root / "JPEGImages" / "img2.jpg").write_bytes(b"")
    dataset = build_dataset(load_data_config(broken_yaml), "train")
    substitute, _ = AugmentedDataset(dataset, EvalTransform(32), seed=5).substitute(2, epoch=0)
    copied_root = runs["copied"][1]
    for folder, suffix in (("JPEGImages", ".jpg"), ("Annotations", ".xml")):
        shutil.copy(copied_root / folder / f"img{substitute}{suffix}", copied_root / folder / f"img2{suffix}")

    with caplog.at_level(logging.WARNING):
        broken = train(batch_norm_run(str(broken_yaml)), project=tmp_path / "runs", name="broken", progress=False)
    copied = train(batch_norm_run(str(runs["copied"][0])), project=tmp_path / "runs", name="copied", progress=False)
    assert broken.iterations == copied.iterations == 2
    got, expected = (torch.load(r.run_dir / "last.pt", weights_only=True)["model"] for r in (broken, copied))
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0, msg=key)
    record = json.loads((broken.run_dir / "replaced_samples.json").read_text())
    assert record == {"unreadable_images": [str(broken_root / "JPEGImages" / "img2.jpg")], "replacements": 1}
    assert not (copied.run_dir / "replaced_samples.json").exists()
    messages = [r.getMessage() for r in caplog.records]
    assert any("img2.jpg: cannot decode image" in m and "replaced" in m for m in messages)
    assert any(m.startswith("1 drawn samples were replaced") for m in messages)


def test_a_batch_of_one_per_process_for_a_batch_norm_model_is_refused_up_front(shapes_yaml, tmp_path):
    with pytest.raises(SSDError, match=r"1 image per process.*batch norm.*set train.batch_size to 2 or more"):
        train(batch_norm_run(shapes_yaml, batch_size=1, base_batch_size=1), project=tmp_path, progress=False)
    without_norm = tiny_run(shapes_yaml, iterations=1, batch_size=1, base_batch_size=1)  # TINY_96: no batch norm
    assert train(without_norm, project=tmp_path, name="one", progress=False).iterations == 1


@pytest.mark.parametrize(
    "writer", [write_labelimg, write_roboflow_coco, write_roboflow_yolo, write_cvat, write_labelme]
)
def test_training_runs_on_each_labelling_tools_layout_as_it_is(tmp_path, writer):
    run = tiny_run(str(writer(tmp_path / "data")), iterations=2, batch_size=2, base_batch_size=2, milestones=[])
    result = train(run, project=tmp_path / "runs", name="r", progress=False)
    assert result.iterations == 2
    assert ssd.load(result.run_dir / "last.pt").config.class_names[1:] == ["cat", "dog", "bird"]


def test_prior_fit_auto_fits_before_training_and_the_run_keeps_the_fitted_boxes(shapes_yaml, tmp_path, caplog):
    import yaml

    run = tiny_run(shapes_yaml, iterations=2)
    run.model["prior_fit"] = "auto"
    with caplog.at_level(logging.INFO, logger="ssd.engine.train"):
        result = train(run, project=tmp_path, name="fit", progress=False)
    assert any("default boxes fitted to" in r.getMessage() for r in caplog.records)
    written = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert written["model"]["prior_fit"] == "off" and written["model"]["min_sizes"] != TINY_96["min_sizes"]
    saved = ssd.load(result.run_dir / "last.pt").config
    assert saved.min_sizes == written["model"]["min_sizes"] == written["model_config"]["min_sizes"]
    assert saved.aspect_ratios == written["model"]["aspect_ratios"]
    # the same run as one with the fitted values written into its config: fitting drew nothing from the run's RNG
    pasted = tiny_run(shapes_yaml, iterations=2)
    pasted.model.update(written["model"])
    again = ssd.load(train(pasted, project=tmp_path, name="pasted", progress=False).run_dir / "last.pt")
    for name, value in ssd.load(result.run_dir / "last.pt").state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], value, rtol=0, atol=0, msg=name)

    ssd.save(ssd.build_model("ssd300_vgg16", 7, **TINY_96), tmp_path / "pretrained.pt")
    tuned = tiny_run(shapes_yaml, iterations=1, weights=str(tmp_path / "pretrained.pt"))
    tuned.model["prior_fit"] = "auto"
    with pytest.raises(SSDError, match="prior_fit: auto would change the default boxes.*prior_fit: force"):
        train(tuned, project=tmp_path, name="refused", progress=False)
    tuned.model["prior_fit"] = "force"
    assert train(tuned, project=tmp_path, name="forced", progress=False).iterations == 1


def test_fine_tuning_keeps_the_base_and_reinitialises_other_heads(tmp_path):
    source = ssd.build_model("ssd300_vgg16", 21, **TINY_96)
    path = tmp_path / "voc.pt"
    ssd.save(source, path)
    target = ssd.build_model("ssd300_vgg16", 4, **TINY_96)
    loaded, skipped = load_matching_weights(target, path)
    assert skipped == [f"net.head.conf.{i}.{p}" for i in range(4) for p in ("bias", "weight")]
    assert torch.equal(target.net.backbone.features[0].weight, source.net.backbone.features[0].weight)
    assert torch.equal(target.net.head.loc[2].weight, source.net.head.loc[2].weight)
    assert loaded == len(target.state_dict()) - len(skipped)


def test_fine_tuning_an_ssdlite_keeps_the_separable_heads_but_their_last_convolution(tmp_path):
    source = ssd.build_model("ssdlite320_mobilenet_v3_large", 91)
    with torch.no_grad():  # statistics unlike a fresh model's, so that copying them shows
        source.net.head.conf[3][0][1].running_var.uniform_(2.0, 3.0)
    ssd.save(source, tmp_path / "coco.pt")
    target = ssd.build_model("ssdlite320_mobilenet_v3_large", 4)
    loaded, skipped = load_matching_weights(target, tmp_path / "coco.pt")
    assert skipped == [f"net.head.conf.{i}.1.{p}" for i in range(6) for p in ("bias", "weight")]
    depthwise = target.net.head.conf[3][0]  # depthwise conv + batch norm: class-independent, kept
    assert torch.equal(depthwise[0].weight, source.net.head.conf[3][0][0].weight)
    assert torch.equal(depthwise[1].running_var, source.net.head.conf[3][0][1].running_var)
    assert loaded == len(target.state_dict()) - len(skipped)


def _ddp_worker(rank: int, world_size: int, port: int, data: str, project: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    run = tiny_run(data, iterations=3, batch_size=8, base_batch_size=8)
    run.model["batch_norm"] = False  # per-process batch statistics would differ from one process's
    train(run, project=project, name="ddp", device="cpu", progress=False)


def test_two_gloo_processes_equal_one_process_on_the_same_global_batch(shapes_yaml, tmp_path):
    run = tiny_run(shapes_yaml, iterations=3, batch_size=8, base_batch_size=8)
    run.model["batch_norm"] = False
    single = train(run, project=tmp_path, name="single", device="cpu", progress=False)
    mp.spawn(_ddp_worker, args=(2, free_port(), shapes_yaml, str(tmp_path)), nprocs=2, join=True)
    a = torch.load(single.run_dir / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    initial = ssd.build_model("ssd300_vgg16", 7, **TINY_96).state_dict()
    for key in a:
        # the all-reduce sums gradients in another order: a conv1 bias gradient sums ~70k terms, so its float32
        # rounding reaches a few 1e-6; a lost or repeated sample would move every weight by orders of magnitude more
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)
    # and the weights did move, by far more than the tolerance
    assert (a["net.head.conf.0.weight"] - initial["net.head.conf.0.weight"]).abs().max() > 1e-3


def _timed_ddp_worker(rank: int, world_size: int, port: int, data: str, project: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    run = tiny_run(data, iterations=100_000, batch_size=8, base_batch_size=8, schedule="wsd", max_minutes=0.03,
                   schedule_by_time=True)  # fmt: skip
    agreements = []
    real_max = train_module.max_over_processes

    def counted_max(*args):
        agreements.append(1)
        return real_max(*args)

    train_module.max_over_processes = counted_max  # this spawned process's own module
    result = train(run, project=project, name="timed_ddp", device="cpu", progress=False)
    (Path(project) / f"rank{rank}.txt").write_text(f"{result.iterations} {len(agreements)}")


def test_gloo_processes_agree_on_the_clock_of_a_time_driven_run(shapes_yaml, tmp_path):
    """Each process's clock differs; the training time is a maximum over processes, agreed every SYNC_INTERVAL
    steps, so they stop at the same iteration, one where they agreed (a disagreement would leave one waiting in an
    all-reduce: the join below would time out)."""
    context = mp.spawn(_timed_ddp_worker, args=(2, free_port(), shapes_yaml, str(tmp_path)), nprocs=2, join=False)
    join_within(context, 240, "the processes did not finish together", poll=5.0)
    stops = {(tmp_path / f"rank{r}.txt").read_text() for r in range(2)}
    assert len(stops) == 1
    iterations, agreements = map(int, stops.pop().split())
    assert 1 <= iterations < 100_000 and iterations % SYNC_INTERVAL == 0
    assert agreements == iterations // SYNC_INTERVAL
    state = torch.load(tmp_path / "timed_ddp" / "last.pt", weights_only=False)
    assert state["train_seconds"] > 0.03 * 60
    assert all(group["lr"] == 0.0 for group in state["optimizer"]["param_groups"])

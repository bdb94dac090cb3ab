import pytest
import torch

import ssd
from ssd.config import TrainConfig
from ssd.engine.schedule import build_optimizer, build_scheduler, lr_factor


def test_step_schedule_with_warmup_by_hand():
    cfg = TrainConfig(iterations=100, milestones=[50, 80], gamma=0.1, warmup_iters=10, warmup_factor=0.01)
    assert lr_factor(0, cfg) == pytest.approx(0.01)
    assert lr_factor(5, cfg) == pytest.approx(0.01 * 0.5 + 0.5)  # halfway through the warm-up
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(49, cfg) == pytest.approx(1.0)
    assert lr_factor(50, cfg) == pytest.approx(0.1)
    assert lr_factor(80, cfg) == pytest.approx(0.01)


def test_cosine_schedule():
    cfg = TrainConfig(iterations=100, schedule="cosine", warmup_iters=0)
    assert lr_factor(0, cfg) == pytest.approx(1.0)
    assert lr_factor(50, cfg) == pytest.approx(0.5)
    assert lr_factor(100, cfg) == pytest.approx(0.0)


def test_learning_rate_scales_linearly_with_the_batch():
    assert TrainConfig(lr=1e-3, batch_size=8, base_batch_size=32).scaled_lr == pytest.approx(2.5e-4)


def test_parameter_groups_follow_the_original():
    model = ssd.build_model("ssd300_vgg16", 3, width=0.125)
    cfg = TrainConfig(lr=1e-3, batch_size=32, weight_decay=5e-4, bias_lr_factor=2.0)
    opt = build_optimizer(model, cfg)
    decay, no_decay, biases = opt.param_groups
    assert decay["weight_decay"] == 5e-4 and all(p.ndim == 4 for p in decay["params"])
    assert no_decay["weight_decay"] == 0 and any(p is model.net.backbone.l2norm.weight for p in no_decay["params"])
    assert biases["lr"] == pytest.approx(2e-3) and biases["weight_decay"] == 0
    total = sum(len(g["params"]) for g in opt.param_groups)
    assert total == len(list(model.parameters()))


def test_scheduler_steps_per_iteration():
    model = torch.nn.Linear(2, 2)
    cfg = TrainConfig(iterations=10, milestones=[5], warmup_iters=0, lr=0.1, batch_size=32)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg)
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1] * 5 + [0.01])

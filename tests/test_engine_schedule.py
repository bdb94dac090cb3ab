import copy
import io
import math

import pytest
import torch
from torch.optim.lr_scheduler import LambdaLR

import ssd
from ssd.config import TrainConfig
from ssd.engine.schedule import (
    TrainingClock,
    build_optimizer,
    build_scheduler,
    expected_iterations,
    load_optimizer_state,
    lr_factor,
    out_of_time,
    training_progress,
)
from ssd.errors import SSDError


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


def test_wsd_schedule_is_constant_then_linear_to_zero():
    cfg = TrainConfig(iterations=100, schedule="wsd", decay_fraction=0.2, warmup_iters=10, warmup_factor=0.01)
    assert lr_factor(0, cfg) == pytest.approx(0.01)  # the warm-up still multiplies
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(80, cfg) == pytest.approx(1.0)
    assert lr_factor(90, cfg) == pytest.approx(0.5)
    assert lr_factor(95, cfg) == pytest.approx(0.25)
    assert lr_factor(100, cfg) == pytest.approx(0.0)


def test_schedule_by_time_follows_whichever_of_iterations_and_minutes_is_further():
    cfg = TrainConfig(iterations=100, schedule="cosine", warmup_iters=0, max_minutes=2, schedule_by_time=True)
    assert training_progress(10, cfg, seconds=60) == pytest.approx(0.5)  # a slow machine: time leads
    assert training_progress(60, cfg, seconds=12) == pytest.approx(0.6)  # a fast one: iterations lead
    assert training_progress(10, cfg, seconds=500) == 1.0
    assert lr_factor(10, cfg, seconds=60) == pytest.approx(0.5)
    assert lr_factor(10, cfg, seconds=120) == pytest.approx(0.0)
    by_iterations = TrainConfig(iterations=100, schedule="cosine", warmup_iters=0, max_minutes=2)
    assert lr_factor(10, by_iterations, seconds=60) == pytest.approx(lr_factor(10, by_iterations))


def test_expected_iterations_follow_the_clock_when_it_runs_out_first():
    cfg = TrainConfig(iterations=1000, max_minutes=10)
    assert expected_iterations(100, 60.0, cfg) == 1000  # 100 per minute: 1,000 fit in 10 minutes
    assert expected_iterations(50, 60.0, cfg) == 500  # half the pace: the clock ends the run at 500
    assert expected_iterations(100, 600.0, cfg) == 100  # out of time now
    assert expected_iterations(100, 900.0, cfg) == 100  # never fewer than done
    assert expected_iterations(5, 0.0, cfg) == 1000
    assert expected_iterations(50, 60.0, TrainConfig(iterations=1000)) == 1000  # no time limit


def test_out_of_time_once_max_minutes_are_used_up():
    assert not out_of_time(59.9, TrainConfig(max_minutes=1))
    assert out_of_time(60.0, TrainConfig(max_minutes=1))
    assert not out_of_time(1e9, TrainConfig())  # no limit


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"schedule": "linear"}, "step, cosine or wsd"),
        ({"schedule": "wsd", "decay_fraction": 0.0}, "decay_fraction"),
        ({"schedule": "cosine", "schedule_by_time": True}, "needs train.max_minutes"),
        ({"schedule": "step", "schedule_by_time": True, "max_minutes": 5}, "cosine or wsd"),
    ],
)
def test_schedule_settings_are_checked(fields, message):
    with pytest.raises(SSDError, match=message):
        TrainConfig(**fields)


def test_scheduler_is_lambdalr_on_the_clock_and_resumes_exactly():
    cfg = TrainConfig(iterations=10, schedule="cosine", warmup_iters=0, lr=0.1, batch_size=32, max_minutes=1,
                      schedule_by_time=True)  # fmt: skip
    clock = TrainingClock()
    opt = build_optimizer(torch.nn.Linear(2, 2), cfg)
    sched = build_scheduler(opt, cfg, clock)
    assert isinstance(sched, LambdaLR)
    for seconds in (3.0, 15.0):  # after two steps the clock leads: progress 0.25 rather than 0.2
        opt.step()
        clock.seconds = seconds
        sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 0.25)))
    buffer = io.BytesIO()
    torch.save({"scheduler": sched.state_dict(), "optimizer": opt.state_dict()}, buffer)
    saved = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)  # what a checkpoint read gives back
    assert saved["scheduler"]["last_epoch"] == 2
    fresh_opt = build_optimizer(torch.nn.Linear(2, 2), cfg)
    restored = build_scheduler(fresh_opt, cfg, TrainingClock(15.0))
    fresh_opt.load_state_dict(saved["optimizer"])
    restored.load_state_dict(saved["scheduler"])
    assert fresh_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    for optimizer, scheduler in ((opt, sched), (fresh_opt, restored)):  # one more step each: the same rate
        optimizer.step()
        scheduler.step()
    assert fresh_opt.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])


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
    assert opt.defaults["fused"]  # the CPU has fused kernels


def test_torchvision_recipes_decay_biases_and_norms_too():
    model = ssd.build_model("ssd300_vgg16", 3, width=0.125, batch_norm=True)
    cfg = TrainConfig(weight_decay=4e-5, bias_lr_factor=1.0, decay_biases_and_norms=True)
    assert [g["weight_decay"] for g in build_optimizer(model, cfg).param_groups] == [4e-5, 4e-5, 4e-5]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_fused_update_equals_the_reference_update(optimizer):
    """The fused kernel changes the speed, not the step: same weights as PyTorch's for-loop update."""
    cfg = TrainConfig(optimizer=optimizer, lr=0.1, weight_decay=0.01, bias_lr_factor=2.0)
    torch.manual_seed(0)
    fused_model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    reference_model = copy.deepcopy(fused_model)
    fused = build_optimizer(fused_model, cfg)
    reference = type(fused)(reference_model.parameters(), lr=0.1)  # replaced by the same groups below
    reference.param_groups.clear()
    for group, params in zip(
        fused.param_groups,
        ([reference_model[0].weight], [reference_model[1].weight], [reference_model[0].bias, reference_model[1].bias]),
    ):
        reference.add_param_group(
            {**{k: v for k, v in group.items() if k != "params"}, "params": params, "fused": None, "foreach": False}
        )
    for _ in range(3):
        x = torch.randn(8, 4)
        for model, opt in ((fused_model, fused), (reference_model, reference)):
            opt.zero_grad()
            model(x).square().sum().backward()
            opt.step()
    for got, expected in zip(fused_model.parameters(), reference_model.parameters()):
        torch.testing.assert_close(got, expected)


def test_scheduler_steps_per_iteration():
    model = torch.nn.Linear(2, 2)
    cfg = TrainConfig(iterations=10, milestones=[5], warmup_iters=0, lr=0.1, batch_size=32)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, TrainingClock())
    lrs = []
    for _ in range(6):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1] * 5 + [0.01])


def test_resuming_from_a_checkpoint_without_fused_kernels_keeps_them():
    """A state saved by the for-loop AdamW (checkpoints older than the fused kernels) must not switch the optimizer
    back: GradScaler would then hand the fused-only arguments to the for-loop update, which fails."""
    cfg = TrainConfig(optimizer="adamw", lr=0.01)
    old_model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    old = torch.optim.AdamW(  # build_optimizer's groups: weights, norm parameters (none here), biases
        [
            {"params": [old_model[0].weight], "weight_decay": 0.0005},
            {"params": [], "weight_decay": 0.0},
            {"params": [old_model[0].bias], "weight_decay": 0.0},
        ],
        lr=0.01,
        foreach=False,
    )
    old_model(torch.randn(4, 3)).sum().backward()
    old.step()
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    opt = build_optimizer(model, cfg)
    load_optimizer_state(opt, old.state_dict())
    assert all(group["fused"] for group in opt.param_groups)
    torch.testing.assert_close(opt.state[model[0].weight]["exp_avg"], old.state[old_model[0].weight]["exp_avg"])
    scaler = torch.amp.GradScaler("cpu")
    before = model[0].weight.detach().clone()
    scaler.scale(model(torch.randn(4, 3)).sum()).backward()
    scaler.step(opt)
    scaler.update()
    assert not torch.equal(model[0].weight, before)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_state_saved_in_channels_last_resumes_into_the_default_layout(optimizer):
    torch.manual_seed(0)
    saved_conv = torch.nn.Conv2d(8, 8, 3).to(memory_format=torch.channels_last)
    cfg = TrainConfig(optimizer=optimizer, lr=0.1)
    saving = build_optimizer(saved_conv, cfg)
    saved_conv(torch.randn(2, 8, 8, 8)).sum().backward()
    saving.step()
    state = copy.deepcopy(saving.state_dict())

    def resumed_step(fused: bool) -> torch.Tensor:
        conv = torch.nn.Conv2d(8, 8, 3)
        conv.load_state_dict(saved_conv.state_dict())  # contiguous weights, channels-last buffers in the state
        opt = build_optimizer(conv, cfg)
        if not fused:
            for group in opt.param_groups:
                group.update(fused=None, foreach=False)
        load_optimizer_state(opt, copy.deepcopy(state))  # a step updates the loaded step count in place
        conv.weight.grad, conv.bias.grad = torch.ones_like(conv.weight), torch.ones_like(conv.bias)
        opt.step()
        return conv.weight.detach()

    torch.testing.assert_close(resumed_step(fused=True), resumed_step(fused=False))

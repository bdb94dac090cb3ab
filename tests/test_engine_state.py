"""TrainState: a saved run restores its step, schedule, clock, history and random generators exactly."""

import random

import pytest
import torch

import ssd
from model_helpers import TINY_96
from ssd.checkpoint import read_checkpoint
from ssd.config import RunConfig, TrainConfig
from ssd.engine.state import TrainState, restore_rng_state, rng_state
from ssd.errors import SSDError


def tiny_state(**train) -> TrainState:
    run = RunConfig(preset="ssd300_vgg16", model=dict(TINY_96), train=TrainConfig(iterations=10, **train))
    torch.manual_seed(0)
    model = ssd.build_model(run.preset, 3, **run.model)
    return TrainState.create(run, model, torch.device("cpu"))


def test_rng_state_round_trip():
    state = rng_state()
    expected = (torch.rand(3), random.random())
    restore_rng_state(state)
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]


def test_saved_state_restores_exactly(tmp_path):
    state = tiny_state(warmup_iters=5)
    for _ in range(3):
        state.optimizer.step()
        state.iteration += 1
        state.clock.seconds += 2.0
        state.scheduler.step()
    state.history["map"].append([3, 0.25])
    state.best_map = 0.25
    state.save(tmp_path / "last.pt")
    restored = tiny_state(warmup_iters=5)
    restored.restore(read_checkpoint(tmp_path / "last.pt"), tmp_path / "last.pt")
    assert (restored.iteration, restored.clock.seconds, restored.best_map) == (3, 6.0, 0.25)
    assert restored.history["map"] == [[3, 0.25]] and restored.lr == pytest.approx(state.lr)
    assert restored.scheduler.last_epoch == 3


def test_a_checkpoint_without_train_seconds_is_refused_with_advice(tmp_path):
    state = tiny_state()
    state.save(tmp_path / "last.pt")
    saved = read_checkpoint(tmp_path / "last.pt")
    del saved["train_seconds"]
    with pytest.raises(SSDError, match="older version.*--weights"):
        tiny_state().restore(saved, tmp_path / "last.pt")

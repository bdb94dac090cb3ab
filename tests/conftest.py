"""Shared test settings: small thread count, deterministic seeds, and the tiny model configs as fixtures."""

import copy

import pytest
import torch

from model_helpers import TINY_96, TINY_128


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def tiny_96() -> dict:
    """A fresh copy of ``model_helpers.TINY_96``: ModelConfig overrides of a 96-pixel SSD for training runs."""
    return copy.deepcopy(TINY_96)


@pytest.fixture
def tiny_128() -> dict:
    """A fresh copy of ``model_helpers.TINY_128``: ModelConfig overrides of a 128-pixel SSD with batch norm."""
    return copy.deepcopy(TINY_128)


@pytest.fixture
def one_thread():
    """One intra-op thread for the test, then the previous count again."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

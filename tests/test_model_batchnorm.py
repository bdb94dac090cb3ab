"""The channels-last batch norm kernel against PyTorch's: outputs, gradients and running statistics."""

import pytest
import torch
from torch import nn

from ssd.model.batchnorm import BatchNorm2d


def _pair(channels: int, momentum: float | None = 0.1) -> tuple[nn.BatchNorm2d, BatchNorm2d]:
    """PyTorch's batch norm in float64 as the reference, and ours in float32 with the same parameters."""
    reference = nn.BatchNorm2d(channels, momentum=momentum).double()
    with torch.no_grad():
        reference.weight.uniform_(0.5, 1.5)
        reference.bias.uniform_(-1.0, 1.0)
    ours = BatchNorm2d(channels, momentum=momentum)
    ours.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in reference.state_dict().items()})
    return reference, ours


def _run(module: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
    x = x.detach().clone().requires_grad_(True)
    y = module(x)
    y.backward(grad)
    return y.detach(), x.grad, module.weight.grad, module.bias.grad


@pytest.mark.parametrize("momentum", [0.1, None])
def test_matches_pytorch_batch_norm_over_steps(momentum: float | None) -> None:
    torch.manual_seed(0)
    reference, ours = _pair(8, momentum)
    for step in range(3):
        # a large mean next to a small spread: the two-pass variance must not lose it
        x = torch.randn(4, 8, 20, 24, dtype=torch.float64) * 0.5 + 30.0 * step
        grad = torch.randn_like(x)
        expected = _run(reference, x, grad)
        # the incoming gradient in either layout (the backward makes it channels-last)
        grad_layout = torch.channels_last if step % 2 else torch.contiguous_format
        got = _run(ours, x.float().to(memory_format=torch.channels_last), grad.float().to(memory_format=grad_layout))
        for name, e, g in zip(("output", "input grad", "weight grad", "bias grad"), expected, got):
            torch.testing.assert_close(g.double(), e, rtol=1e-4, atol=1e-4, msg=f"step {step}: {name}")
        assert got[0].is_contiguous(memory_format=torch.channels_last)
        reference.zero_grad()
        ours.zero_grad()
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key].to(value.dtype), value, rtol=1e-5, atol=1e-5, msg=key)
    assert int(ours.num_batches_tracked) == 3


def test_normalises_by_hand() -> None:
    """Two channels, worked out by hand: (x - mean) / sqrt(var + eps) * weight + bias, unbiased running var."""
    bn = BatchNorm2d(2, eps=0.0, momentum=1.0)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([2.0, 1.0]))
        bn.bias.copy_(torch.tensor([0.0, 5.0]))
    # channel 0 holds 1 and 3: mean 2, variance 1; channel 1 holds 4 and 8: mean 6, variance 4
    x = torch.tensor([[[[1.0, 3.0]], [[4.0, 8.0]]]]).to(memory_format=torch.channels_last)
    y = bn(x)
    torch.testing.assert_close(y, torch.tensor([[[[-2.0, 2.0]], [[4.0, 6.0]]]]))
    torch.testing.assert_close(bn.running_mean, torch.tensor([2.0, 6.0]))
    torch.testing.assert_close(bn.running_var, torch.tensor([2.0, 8.0]))  # unbiased: n / (n - 1) = 2


def test_other_cases_take_pytorchs_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    from ssd.model import batchnorm

    calls = []
    original = batchnorm._ChannelsLastBatchNorm.apply
    monkeypatch.setattr(batchnorm._ChannelsLastBatchNorm, "apply", lambda *a: calls.append(1) or original(*a))
    x = torch.randn(2, 8, 6, 6)
    BatchNorm2d(8)(x.to(memory_format=torch.channels_last))
    assert len(calls) == 1
    BatchNorm2d(8)(x)  # NCHW memory
    BatchNorm2d(8).eval()(x.to(memory_format=torch.channels_last))  # evaluation: running statistics
    BatchNorm2d(16)(torch.randn(2, 16, 6, 6).to(memory_format=torch.channels_last))  # enough channels
    assert len(calls) == 1
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm2d(8)(torch.randn(1, 8, 1, 1))

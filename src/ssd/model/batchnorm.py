"""Batch norm with a faster training step for channels-last CPU tensors with few channels.

The rule: in training mode, on a float32 channels-last CPU tensor with fewer than ``FEW_CHANNELS`` channels, the
forward and backward run as reductions over the ``[pixels, channels]`` matrix that channels-last memory is;
PyTorch's own channels-last CPU kernel is slow when the channels are few (the narrow ``shapes`` preset has 8).
Everything else (evaluation, other layouts, CUDA, more channels) runs PyTorch's kernel; state dicts and
behaviour are those of ``nn.BatchNorm2d``. ``benchmarks/bench_speed_patches.py`` measures both kernels, and
``benchmarks/results.md`` holds the figures.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

FEW_CHANNELS = 16  # from this many channels on, PyTorch's kernel is the faster one


def _rows(x: Tensor) -> Tensor:
    """The ``[N*H*W, C]`` matrix that a channels-last ``[N, C, H, W]`` tensor's memory is (a view)."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


class _ChannelsLastBatchNorm(torch.autograd.Function):
    """Training-mode batch norm of a channels-last tensor; returns the output and the batch mean and
    (biased) variance. Two passes for the statistics (mean, then the centred sum of squares) keep the
    variance exact when the mean is large."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
        rows = _rows(x)
        count = rows.shape[0]
        mean = rows.sum(0) / count
        centred = rows - mean
        var = torch.linalg.vecdot(centred.T, centred.T) / count
        inv_std = torch.rsqrt(var + eps)
        y = torch.empty_like(x, memory_format=torch.channels_last)
        torch.addcmul(bias, centred, weight * inv_std, out=_rows(y))
        ctx.save_for_backward(centred, inv_std, weight)
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_y: Tensor, *_: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        centred, inv_std, weight = ctx.saved_tensors
        grad_rows = _rows(grad_y.contiguous(memory_format=torch.channels_last))
        count = grad_rows.shape[0]
        grad_bias = grad_rows.sum(0)
        grad_dot_centred = torch.linalg.vecdot(grad_rows.T, centred.T)  # sum of grad * (x - mean) per channel
        grad_weight = grad_dot_centred * inv_std
        # d loss / d x = a * grad + b * (x - mean) + c, per channel
        a = weight * inv_std
        b = -a * inv_std * inv_std * grad_dot_centred / count
        c = -a * grad_bias / count
        grad_x = torch.empty_like(grad_y, memory_format=torch.channels_last)
        torch.addcmul(c, grad_rows, a, out=_rows(grad_x)).addcmul_(centred, b)
        return grad_x, grad_weight, grad_bias, None


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training step on a float32 channels-last CPU tensor with fewer than
    ``FEW_CHANNELS`` channels runs :class:`_ChannelsLastBatchNorm` (same outputs, gradients and running
    statistics to float rounding)."""

    def forward(self, x: Tensor) -> Tensor:
        if not self._use_row_kernel(x):
            return super().forward(x)
        self.num_batches_tracked.add_(1)
        # momentum None: a cumulative moving average, as nn.BatchNorm2d
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        y, mean, var = _ChannelsLastBatchNorm.apply(x, self.weight, self.bias, self.eps)
        count = x.numel() // x.shape[1]
        with torch.no_grad():
            self.running_mean.lerp_(mean, momentum)
            self.running_var.lerp_(var * (count / (count - 1)), momentum)  # the unbiased variance, as PyTorch
        return y

    def _use_row_kernel(self, x: Tensor) -> bool:
        return (
            self.training
            and self.affine
            and self.track_running_stats
            and self.num_features < FEW_CHANNELS
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu")
            and x.dim() == 4
            and x.numel() > x.shape[1]  # one value per channel: let PyTorch raise its error
            and x.is_contiguous(memory_format=torch.channels_last)
            and not x.is_contiguous()  # plain NCHW memory is not a row matrix
            and not torch.jit.is_tracing()
        )

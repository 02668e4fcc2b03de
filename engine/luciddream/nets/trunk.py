"""EfficientNet-Lite's convolutional trunk as one autograd function with a hand-written backward pass.

A dream needs the gradient of the image only: the weights are frozen. Through a ReLU6 network that gradient needs,
per layer, the weights and which outputs were clipped, nothing else. PyTorch's autograd cannot know that: it keeps
every convolution's input and every activation's input (two full tensors per layer) and runs a generic backward.
Here the forward keeps one tensor per ReLU6 layer (its output, which says where it was clipped) and the backward
runs `convolution_backward` for the input alone.
That is faster per window than autograd and needs far less memory, which is what let the default tile grow
(figures: docs/performance.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Conv:
    """One convolution of the trunk, with what follows it."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    stride: tuple[int, int]
    padding: tuple[int, int]                 # symmetric zero padding the convolution adds itself
    groups: int
    pad: tuple[int, int, int, int] | None    # uneven "same" padding (left, right, top, bottom) of the original
    crop: tuple[int, int] | None             # see _conv: rows and columns of output to drop instead of padding
    relu6: bool                              # clipped to [0, 6] after the bias
    residual: bool = False                   # the block's input is added to this convolution's output


def _conv(conv: nn.Conv2d, relu6: bool, residual: bool = False) -> Conv:
    """TensorFlow's "same" padding is uneven for even sizes (one more zero after than before); PyTorch's
    convolution pads evenly, so the reference copies the input into a padded tensor first. When the output is
    smaller than the input (a strided depthwise convolution: a quarter), it is cheaper to pad evenly by enough,
    which computes a few extra outputs at the top and left, and to copy the output without them."""
    static = getattr(conv, "static_padding", None)
    pad = tuple(static.padding) if isinstance(static, nn.ZeroPad2d) and any(static.padding) else None
    padding, crop = tuple(conv.padding), None
    c_in, c_out = conv.weight.shape[1] * conv.groups, conv.weight.shape[0]
    if pad is not None and conv.padding == (0, 0) and c_out < c_in * conv.stride[0] * conv.stride[1]:
        left, right, top, bottom = pad
        ph = top + conv.stride[0] * math.ceil(max(0, bottom - top) / conv.stride[0])
        pw = left + conv.stride[1] * math.ceil(max(0, right - left) / conv.stride[1])
        padding, crop = (ph, pw), ((ph - top) // conv.stride[0], (pw - left) // conv.stride[1])
    return Conv(conv.weight, conv.bias, tuple(conv.stride), padding, conv.groups, pad, crop, relu6, residual)


def stages(net: nn.Module) -> list[list[Conv]]:
    """The stem and each block of a fused EfficientNet-Lite as lists of convolutions (batch norms already folded
    into them, see lite.fuse). A block's first convolution reads the block's input; a residual adds it back
    under the same condition the reference implementation uses."""
    out = [[_conv(net._conv_stem, relu6=True)]]
    for block in net._blocks:
        args = block._block_args
        skip = bool(block.id_skip and args.stride == 1 and args.input_filters == args.output_filters)
        convs = [_conv(block._expand_conv, relu6=True)] if args.expand_ratio != 1 else []
        convs += [_conv(block._depthwise_conv, relu6=True), _conv(block._project_conv, relu6=False, residual=skip)]
        out.append(convs)
    return out


def _forward(x: torch.Tensor, stages_: Sequence[list[Conv]], fmt: torch.memory_format, keep: bool):
    """Run the stages; returns every stage's output and, when `keep`, what the backward needs."""
    outs, saved = [], []
    for convs in stages_:
        block_in = x
        for c in convs:
            inp = F.pad(x, c.pad) if c.pad is not None and c.crop is None else x
            y = F.conv2d(inp, c.weight, c.bias, c.stride, c.padding, 1, c.groups)
            full = tuple(y.shape)
            if c.crop is not None:
                left, right, top, bottom = c.pad
                kh, kw = c.weight.shape[2:]
                h = (x.shape[2] + top + bottom - kh) // c.stride[0] + 1
                w = (x.shape[3] + left + right - kw) // c.stride[1] + 1
                y = y[:, :, c.crop[0]:c.crop[0] + h, c.crop[1]:c.crop[1] + w].contiguous(memory_format=fmt)
            if c.relu6:
                y.clamp_(0.0, 6.0)
            if c.residual:
                y.add_(block_in)
            if keep:
                saved.append((tuple(inp.shape), full, y if c.relu6 else None))
            x = y
        outs.append(x)
    return outs, saved


class _Trunk(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, stages_: Sequence[list[Conv]], fmt: torch.memory_format):  # type: ignore[override]
        outs, saved = _forward(x, stages_, fmt, keep=True)
        ctx.set_materialize_grads(False)  # outputs nobody used get None, so their stages cost nothing
        ctx.stages, ctx.saved = stages_, saved
        ctx.fmt = fmt
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[override]
        fmt = ctx.fmt
        saved = ctx.saved
        if saved is None:
            raise RuntimeError("luciddream's trunk frees its activations in the first backward pass; "
                               "retain_graph is not supported")
        ctx.saved = None  # free the activations as soon as possible
        g = None
        i = len(saved)
        for convs, tap in zip(reversed(ctx.stages), reversed(grads)):
            if tap is not None:
                g = tap if g is None else g + tap
            if g is None:  # nothing asked of this stage or any deeper one
                i -= len(convs)
                continue
            g = g.contiguous(memory_format=fmt)
            skip = None
            for c in reversed(convs):
                i -= 1
                in_shape, full, y = saved[i]
                if c.residual:
                    skip = g
                if y is not None:
                    g = torch.ops.aten.hardtanh_backward(g, y, 0.0, 6.0)
                if c.crop is not None:  # the dropped outputs get no gradient
                    top, left = c.crop
                    g = F.pad(g, (left, full[3] - left - g.shape[3], top, full[2] - top - g.shape[2]))
                    g = g.contiguous(memory_format=fmt)
                # Only the input's shape and layout matter to this call (the weights are frozen): an unfilled
                # tensor stands in for it. Its layout picks the kernels, so it must match the forward's.
                shape_only = torch.empty(in_shape, dtype=g.dtype, device=g.device, memory_format=fmt)
                g = torch.ops.aten.convolution_backward(g, shape_only, c.weight, None, c.stride, c.padding, (1, 1),
                                                        False, (0, 0), c.groups, (True, False, False))[0]
                if c.pad is not None and c.crop is None:
                    left, right, top, bottom = c.pad
                    g = g[:, :, top:g.shape[2] - bottom, left:g.shape[3] - right]
            if skip is not None:
                g = g + skip
        return g, None, None


def run(x: torch.Tensor, stages_: Sequence[list[Conv]],
        memory_format: torch.memory_format = torch.channels_last) -> list[torch.Tensor]:
    """Each stage's output for input `x`; differentiable in `x` through the hand-written backward when `x`
    needs a gradient, a plain forward otherwise. `memory_format` is the weights' layout: every tensor of the
    pass is kept in it, since a convolution handed mixed layouts copies its operands first (docs/performance.md)."""
    x = x.contiguous(memory_format=memory_format)
    if torch.is_grad_enabled() and x.requires_grad:
        return list(_Trunk.apply(x, stages_, memory_format))
    return _forward(x, stages_, memory_format, keep=False)[0]

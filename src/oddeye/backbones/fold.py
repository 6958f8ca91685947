"""Fold inference-mode BatchNorm into the convolution that feeds it (same output, fewer ops)."""

from __future__ import annotations

import torch
from torch import nn


def folded_conv_params(weight: torch.Tensor, bias: torch.Tensor | None,
                       bn_mean: torch.Tensor, bn_var: torch.Tensor,
                       bn_weight: torch.Tensor | None, bn_bias: torch.Tensor | None,
                       eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of a conv equal to conv followed by BatchNorm with running statistics.

    y = gamma * (conv(x) + b - mean) / sqrt(var + eps) + beta, computed in float64 for accuracy.
    """
    dtype = weight.dtype
    scale = torch.rsqrt(bn_var.double() + eps)
    if bn_weight is not None:
        scale = scale * bn_weight.double()
    shift = -bn_mean.double() * scale
    if bias is not None:
        shift = shift + bias.double() * scale
    if bn_bias is not None:
        shift = shift + bn_bias.double()
    new_weight = weight.double() * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    return new_weight.to(dtype), shift.to(dtype)


def fold_conv_bn(conv: nn.Conv2d | nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> None:
    """Fold ``bn`` (its running statistics) into ``conv`` in place; ``bn`` is then redundant.

    A transposed conv stores its weight as ``(in, out / groups, kh, kw)``: its output channels
    are scaled through a ``(groups, in / groups, out / groups, ...)`` view of it.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"cannot fold {bn}: it tracks no running statistics")
    if conv.out_channels != bn.num_features:
        raise ValueError(f"cannot fold {bn} into {conv}: channel counts differ")
    with torch.no_grad():
        if isinstance(conv, nn.ConvTranspose2d):
            g, w = conv.groups, conv.weight
            # (groups * out/g, in/g, kh, kw): output channels first, as a plain conv stores them
            as_out = w.reshape(g, w.shape[0] // g, w.shape[1], *w.shape[2:]).transpose(1, 2)
            as_out = as_out.reshape(conv.out_channels, w.shape[0] // g, *w.shape[2:])
            weight, bias = folded_conv_params(as_out, conv.bias, bn.running_mean,
                                              bn.running_var, bn.weight, bn.bias, bn.eps)
            weight = weight.reshape(g, w.shape[1], w.shape[0] // g, *w.shape[2:]).transpose(1, 2)
            weight = weight.reshape(w.shape).contiguous()
        else:
            weight, bias = folded_conv_params(conv.weight, conv.bias, bn.running_mean,
                                              bn.running_var, bn.weight, bn.bias, bn.eps)
        requires_grad = conv.weight.requires_grad
        conv.weight = nn.Parameter(weight, requires_grad=requires_grad)
        conv.bias = nn.Parameter(bias, requires_grad=requires_grad)


def _pairs_of(module: nn.Module) -> list[tuple[str, str]]:
    """Names of (conv, bn) children of ``module`` that run back to back."""
    pairs = [tuple(p) for p in getattr(module, "bn_pairs", ())]
    if isinstance(module, nn.Sequential):
        items = list(module.named_children())
        for (name_a, a), (name_b, b) in zip(items, items[1:], strict=False):
            if isinstance(a, (nn.Conv2d, nn.ConvTranspose2d)) and type(b) is nn.BatchNorm2d:
                pairs.append((name_a, name_b))
    return pairs


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a (transposed) conv into it; BN -> Identity.

    Pairs are found by adjacency inside ``nn.Sequential`` and from a module's ``bn_pairs``
    attribute (attribute names of a conv and the BatchNorm applied right after it; pairs whose
    layers are absent are skipped). The result
    equals the module in eval mode; afterwards it has no batch statistics to train. In place;
    returns ``module`` for chaining.
    """
    for parent in list(module.modules()):
        for conv_name, bn_name in _pairs_of(parent):
            conv = getattr(parent, conv_name, None)
            bn = getattr(parent, bn_name, None)
            if not isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) \
                    or not isinstance(bn, nn.BatchNorm2d):
                continue  # optional layer absent, or already folded
            fold_conv_bn(conv, bn)
            setattr(parent, bn_name, nn.Identity())
    return module


def count_batchnorm(module: nn.Module) -> int:
    """Number of BatchNorm layers left in ``module`` (0 once fully folded)."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())

"""Input preprocessing (conf/preprocess/): statistics fitted on the training split only.

Every option is a small class: `fit(images_uint8)` learns its statistics, calling it maps a float batch
in [0, 1] to model inputs, and `state_dict()` / `load_state_dict()` carry the statistics in checkpoints
so `deeprob eval` applies exactly the same transform. Try: deeprob train dataset=synthetic preprocess=none
"""
import torch
from torch import nn


def pixel_moments(images: torch.Tensor, chunk: int = 4096):
    """Per-channel mean and std of uint8 images (N,C,H,W) scaled to [0,1], in float64, chunked for memory."""
    n_channels = images.shape[1]
    total = torch.zeros(n_channels, dtype=torch.float64)
    total_sq = torch.zeros(n_channels, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].to(torch.float64) / 255
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean**2).clamp_min(0).sqrt()
    return mean, std


class Identity(nn.Module):
    """Pixels in [0, 1], nothing fitted."""

    def fit(self, images):
        return self

    def forward(self, x):
        return x


class Standardize(nn.Module):
    """(x − mean_c) / std_c with per-channel statistics of the training split (the ResNet recipe)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("std", torch.ones(0))

    def fit(self, images):
        mean, std = pixel_moments(images)
        self.mean = mean.float().view(-1, 1, 1)
        self.std = std.clamp_min(1e-6).float().view(-1, 1, 1)
        return self

    def forward(self, x):
        return (x - self.mean) / self.std

    def load_state_dict(self, state, strict=True):
        # buffers are sized by fit(); take the stored shapes before loading
        for name, value in state.items():
            setattr(self, name, torch.empty_like(value))
        return super().load_state_dict(state, strict)

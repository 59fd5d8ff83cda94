"""Input preprocessing (conf/preprocess/): statistics fitted on the training split only.

Every option is a small nn.Module: `fit(images_uint8)` learns its statistics (computed once per training set
and cached under deeprob_cli.data.cache_dir()), calling it maps a float batch in [0, 1] to model inputs,
`output_shape(in_shape)` says what the model receives, and the buffers travel in `state_dict()` so
`deeprob eval` applies exactly the same transform.
Try: deeprob train dataset=synthetic model=mlp preprocess=whiten
"""
import hashlib
import io
import os
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from .. import UserError
from ..validate import Choice, Range

Eps = Annotated[float, Range(0, low_open=True)]  # ε, relative to the mean eigenvalue (whitening_scales)


# ---------------------------------------------------------------- statistics (float64, chunked)

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


def _mean_and_covariance(rows):
    """Mean and covariance of the rows of the float64 matrices yielded by `rows` (two passes avoided:
    Σ = E[xxᵀ] − μμᵀ accumulated in float64)."""
    total, outer, count = 0, 0, 0
    for x in rows:
        total = total + x.sum(0)
        outer = outer + x.T @ x
        count += len(x)
    mean = total / count
    return mean, outer / count - torch.outer(mean, mean)


def image_moments(images: torch.Tensor, chunk: int = 1024):
    """Mean (D,) and covariance (D,D) of whole images flattened to D = C·H·W values in [0,1]."""
    return _mean_and_covariance(images[s:s + chunk].flatten(1).to(torch.float64) / 255
                                for s in range(0, len(images), chunk))


def patch_moments(images: torch.Tensor, size: int, chunk: int = 256):
    """Mean and covariance of every k×k patch (C·k² values, torch.nn.functional.unfold order) in [0,1]."""
    def rows():
        for s in range(0, len(images), chunk):
            x = images[s:s + chunk].to(torch.float64) / 255
            yield F.unfold(x, size).transpose(1, 2).reshape(-1, images.shape[1] * size * size)
    return _mean_and_covariance(rows())


def cached(images: torch.Tensor, tag: str, compute) -> dict:
    """compute(images) -> {name: tensor}, once per (training images, tag): later calls read the cache file."""
    from ..data import cache_dir

    key = hashlib.sha1(f"{tag}\0{tuple(images.shape)}\0".encode())
    key.update(images.contiguous().cpu().numpy().data)
    path = cache_dir() / "statistics" / f"{tag}-{key.hexdigest()[:20]}.pt"
    if path.is_file():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # a torn or foreign file is only a cache: compute again
            pass
    stats = compute(images)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(stats, buffer)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)  # atomic: a concurrent run sees no file or the whole file
    return stats


def eigh_descending(covariance: torch.Tensor):
    """Eigenvalues (descending, clamped ≥ 0) and eigenvectors (columns) of a symmetric matrix."""
    values, vectors = torch.linalg.eigh(covariance)
    return values.flip(0).clamp_min(0), vectors.flip(1)


# ---------------------------------------------------------------- options

class Preprocess(nn.Module):
    """Base: nothing fitted; buffers sized by fit() take their stored shapes when loaded from a checkpoint."""

    def fit(self, images):
        return self

    def forward(self, x):
        return x

    def output_shape(self, in_shape):
        """The shape (C,H,W) of one preprocessed image, i.e. what the model is built for."""
        return tuple(in_shape)

    def load_state_dict(self, state, strict=True, assign=False):
        for name, value in state.items():
            if name in self._buffers:
                setattr(self, name, torch.empty_like(value))
            elif name in self._parameters:  # a trainable fitted value (patch_whiten's bias)
                setattr(self, name, nn.Parameter(torch.empty_like(value), requires_grad=False))
        return super().load_state_dict(state, strict, assign)


class Identity(Preprocess):
    """Pixels in [0, 1], nothing fitted."""


class MeanImage(Preprocess):
    """(x − mean image (C×H×W) of the training split) · scale (AlexNet; scale 255: Krizhevsky et al.'s 0–255 pixels)."""

    def __init__(self, scale: Annotated[float, Range(0, low_open=True)] = 1.0):
        super().__init__()
        self.scale = scale
        self.register_buffer("mean", torch.zeros(0))

    def fit(self, images):
        stats = cached(images, "mean_image", lambda im: {"mean": sum(
            im[s:s + 4096].to(torch.float64).sum(0) for s in range(0, len(im), 4096)) / (255 * len(im))})
        self.mean = stats["mean"].float()
        return self

    def forward(self, x):
        return (x - self.mean) * self.scale


class ChannelMean(Preprocess):
    """x − per-channel mean of the training split (VGG)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(0))

    def fit(self, images):
        self.mean = _channel_stats(images)["mean"].float().view(-1, 1, 1)
        return self

    def forward(self, x):
        return x - self.mean


class Standardize(Preprocess):
    """(x − mean_c) / std_c with per-channel statistics of the training split (the ResNet recipe)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("std", torch.ones(0))

    def fit(self, images):
        stats = _channel_stats(images)
        self.mean = stats["mean"].float().view(-1, 1, 1)
        self.std = stats["std"].clamp_min(1e-6).float().view(-1, 1, 1)
        return self

    def forward(self, x):
        return (x - self.mean) / self.std


def _channel_stats(images):
    return cached(images, "channel", lambda im: dict(zip(("mean", "std"), pixel_moments(im))))


def _image_eigen(images):
    def compute(im):
        mean, cov = image_moments(im)
        values, vectors = eigh_descending(cov)
        return {"mean": mean, "values": values, "vectors": vectors}
    return cached(images, "image_eigen", compute)


class PCA(Preprocess):
    """Coordinates along the principal components of the training images: z = Uₖᵀ(x − μ), so Cov(z) = diag(λ)
    (the lecture's "decorrelated data"). The output is a vector (k,1,1), not an image: for model=mlp."""

    keeps_layout = False  # config.check() refuses it for spatial models

    def __init__(self, components: Annotated[int | None, Range(1, integer=True, nullable=True)] = None):
        super().__init__()
        self.components = components
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("projection", torch.zeros(0, 0))

    def fit(self, images):
        stats = _image_eigen(images)
        dims = stats["vectors"].shape[0]
        k = dims if self.components is None else self.components
        if k > dims:  # depends on the data: known only here, after the run folder exists
            raise UserError(f"preprocess=pca: components={k} is more than the {dims} values of one image; use at most "
                            f"{dims}")
        self.mean = stats["mean"].float()
        self.projection = stats["vectors"][:, :k].float()
        return self

    def forward(self, x):
        z = (x.flatten(1) - self.mean) @ self.projection
        return z.view(len(x), -1, 1, 1)

    def output_shape(self, in_shape):
        return (self.projection.shape[1], 1, 1)


def fitted(values: torch.Tensor) -> torch.Tensor:
    """Which eigen-directions the training data spans: λᵢ above the rounding floor λ_max·D·ε_float64 (numpy's
    matrix_rank rule). With fewer images than values per image (N ≤ D) the covariance has rank ≤ N − 1: the other
    directions were never seen, and their λ = 0 is rounding, not a variance."""
    return values > values.max() * len(values) * torch.finfo(values.dtype).eps


def whitening_scales(values: torch.Tensor, eps: float) -> torch.Tensor:
    """1/√(λᵢ + ε·mean(λ)) along the fitted directions, 0 along the ones the data never spanned (whitening the
    fitted subspace only, as PCA whitening does: 1/√(ε·λ̄) there would amplify whatever held-out images hold in
    those directions, ≈ 300× on CIFAR-10 with 1,000 images). ε is relative to the mean eigenvalue (the mean
    variance per input value), so the same eps means the same thing whatever the pixel scale; the output's
    variance along a fitted uᵢ is λᵢ/(λᵢ + ε·λ̄)."""
    return torch.where(fitted(values), (values + eps * values.mean()).rsqrt(), torch.zeros((), dtype=values.dtype))


class Whiten(Preprocess):
    """ZCA whitening of whole images: x' = U diag(1/√(λ+ε·λ̄)) Uᵀ (x − μ), λ̄ the mean eigenvalue, so
    Cov(x') = U diag(λ/(λ+ε·λ̄)) Uᵀ: the identity in every direction with λ ≫ ε·λ̄, damped below that
    (the lecture's "whitened data"; ZCA keeps the pixel layout, Bell & Sejnowski 1997). Directions the training
    images do not span (fewer images than values per image) are projected out (whitening_scales)."""

    def __init__(self, eps: Eps = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(0))
        self.register_buffer("matrix", torch.zeros(0, 0))

    def fit(self, images):
        stats = _image_eigen(images)
        u = stats["vectors"]
        self.mean = stats["mean"].float()
        self.matrix = (u * whitening_scales(stats["values"], self.eps)) @ u.T  # symmetric, float64 until here
        self.matrix = self.matrix.float()
        return self

    def forward(self, x):
        return ((x.flatten(1) - self.mean) @ self.matrix).view(x.shape)


class PatchWhiten(Preprocess):
    """Whitening of k×k patches as a fixed first convolution (as fast CIFAR trainers do, e.g. Keller Jordan's
    airbench): one filter per principal component of the training patches, wᵢ = uᵢ/√(λᵢ+ε·λ̄), bias −wᵢᵀμ;
    the output has C·k² channels with Cov ≈ I, at the input's height and width (border pixels replicated:
    zero padding would put black, far from the mean, into every border patch and break the whitening there)."""

    def __init__(self, kernel_size: Annotated[int, Range(1, integer=True)] = 3, eps: Eps = 1e-5, negate: bool = False,
                 train_bias_epochs: Annotated[int, Range(0, integer=True)] = 0,
                 padding: Annotated[str, Choice("replicate", "none")] = "replicate"):
        super().__init__()
        self.kernel_size, self.eps = kernel_size, eps
        self.negate, self.train_bias_epochs, self.padding = negate, train_bias_epochs, padding
        self.register_buffer("weight", torch.zeros(0, 0, 0, 0))
        if train_bias_epochs:  # a parameter: train.py hands it to the optimizer, set_epoch() switches it on and off
            self.bias = nn.Parameter(torch.zeros(0), requires_grad=False)
        else:
            self.register_buffer("bias", torch.zeros(0))

    def fit(self, images):
        k = self.kernel_size

        def compute(im):
            mean, cov = patch_moments(im, k)
            values, vectors = eigh_descending(cov)
            return {"mean": mean, "values": values, "vectors": vectors}

        stats = cached(images, f"patch_eigen{k}", compute)
        filters = stats["vectors"].T * whitening_scales(stats["values"], self.eps).unsqueeze(1)  # row i = wᵢ
        if self.negate:  # each component and its negative: an activation after them keeps both signs' halves
            filters = torch.cat([filters, -filters])
        self.weight = filters.float().view(-1, images.shape[1], k, k)
        bias = (-(filters @ stats["mean"])).float()
        if isinstance(self.bias, nn.Parameter):
            self.bias = nn.Parameter(bias.to(self.bias.device), requires_grad=False)
        else:
            self.bias = bias
        return self

    def set_epoch(self, epoch: int):
        """train_bias_epochs > 0: the bias is trained in epochs 1..N and frozen after (airbench: 3 epochs)."""
        if isinstance(self.bias, nn.Parameter):
            self.bias.requires_grad_(epoch <= self.train_bias_epochs)

    def forward(self, x):
        if self.padding == "none":  # (H−k+1)×(W−k+1) maps of whole patches only (airbench: 31×31)
            return F.conv2d(x, self.weight, self.bias)
        k = self.weight.shape[-1]
        before, after = (k - 1) // 2, k // 2  # 'same' size; explicit so even k pads without a copy warning
        return F.conv2d(F.pad(x, (before, after, before, after), mode="replicate"), self.weight, self.bias)

    def output_shape(self, in_shape):
        shrink = self.weight.shape[-1] - 1 if self.padding == "none" else 0
        return (self.weight.shape[0], *(side - shrink for side in tuple(in_shape)[1:]))

"""Test-time augmentation (conf/tta/): several views of each evaluation image, softmax averaged over them.

Every option is a callable `tta(x) -> list of batches`, each of the input's shape (N,C,H,W), on a float
batch in [0, 1]; deeprob_cli.evaluate.evaluate() averages the model's softmax over the views. An option may
also have `stochastic(model)`, a context manager under which evaluate() runs all its passes (mc_dropout: the
model's dropout layers switched back on, with a fixed seed so a score is repeatable).
Try: deeprob train dataset=synthetic tta=multicrop   or   deeprob eval RUN_DIR tta=flip
"""
import contextlib
import logging
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from ..validate import Choice, Range
from .augment import resized_crop

log = logging.getLogger("deeprob")


class Identity:
    """One view: the image itself."""

    def __call__(self, x):
        return [x]


class Flip:
    """Two views: the image and its mirror image."""

    def __call__(self, x):
        return [x, x.flip(3)]


class FlipTranslate:
    """Six views, logits averaged with weights (Keller Jordan's airbench TTA): the image and its mirror, each
    also shifted by `shift` pixels diagonally up-left and down-right (reflect padding). The two untranslated
    views share `center_weight` of the total, the four translated ones the rest; the averaged logits are the
    prediction (`combine`), not the mean of the softmaxes."""

    def __init__(self, shift: Annotated[int, Range(1, integer=True)] = 1,
                 center_weight: Annotated[float, Range(0, 1)] = 0.5):
        self.shift, self.center_weight = shift, center_weight

    def __call__(self, x):
        s, (h, w) = self.shift, x.shape[-2:]
        mode = "reflect" if s < min(h, w) else "replicate"
        padded = F.pad(x, (s, s, s, s), mode=mode)
        shifted = [padded[..., :h, :w], padded[..., 2 * s:2 * s + h, 2 * s:2 * s + w]]
        return [x, x.flip(3), *shifted, *(v.flip(3) for v in shifted)]

    def combine(self, logits: list) -> torch.Tensor:
        """Σ weightᵢ·logitsᵢ: center_weight/2 for each untranslated view, (1 − center_weight)/4 for the others."""
        weights = [self.center_weight / 2] * 2 + [(1 - self.center_weight) / 4] * 4
        return sum(w * z for w, z in zip(weights, logits))


class MultiCrop:
    """The lecture's fixed 10 views (AlexNet, ResNet): 4 corner crops and the centre crop, each with its mirror.
    A crop's side is `size` × the image's; `fill` brings it back to the image's size: reflect = pad around it
    (the same shifted-image statistics that augment=crop trains on), resize = bilinear upscaling."""

    def __init__(self, size: Annotated[float, Range(0, 1, low_open=True, what="a fraction")] = 0.875,
                 fill: Annotated[str, Choice("reflect", "resize")] = "reflect"):
        self.size, self.fill = size, fill

    def crops(self, x):
        """The 4 corner crops and the centre crop, in that order: top-left, top-right, bottom-left, bottom-right."""
        h, w = x.shape[-2:]
        ch, cw = max(1, round(self.size * h)), max(1, round(self.size * w))
        top, left = (h - ch) // 2, (w - cw) // 2
        corners = [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), (top, left)]
        return [x[..., i:i + ch, j:j + cw] for i, j in corners]

    def restore(self, crop, h, w):
        """A crop brought back to h×w."""
        ch, cw = crop.shape[-2:]
        if self.fill == "resize":
            return F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)
        top, left = (h - ch) // 2, (w - cw) // 2
        mode = "reflect" if max(h - ch, w - cw) < min(ch, cw) else "replicate"  # reflect needs pad < size
        return F.pad(crop, (left, w - cw - left, top, h - ch - top), mode=mode)

    def __call__(self, x):
        h, w = x.shape[-2:]
        views = [self.restore(c, h, w) for c in self.crops(x)]
        return views + [v.flip(3) for v in views]


class MultiScale:
    """The ResNet paper's multi-scale testing with 10 crops (He et al. 2016, section 3.4; the lecture's testing
    slide): for each scale s the image's short side is resized to s × the crop side, and 10 crops of the
    image's own size are taken (4 corners, centre, each mirrored): len(scales) × 10 views. Done in one bilinear
    resampling per crop (torchvision.ops.roi_align on the matching box of the original image). Scale 1 is the
    image itself; its corner crops then coincide with the centre."""

    def __init__(self, scales: list[float] = (1.0, 1.25, 1.5)):
        scales = list(scales)
        if not scales or not all(Range(1).allows(s) for s in scales):  # the elements of a list: checked here
            raise ValueError(f"scales: {scales!r} is not allowed; expected a list of numbers ≥ 1")
        self.scales = scales

    def boxes(self, n, h, w, s):
        """The 5 crops at scale s as boxes (x1, y1, x2, y2) of the original image: a crop of h×w pixels of the
        image resized by s is a box of h/s × w/s pixels of the original."""
        bh, bw = h / s, w / s
        corners = [(0, 0), (0, w - bw), (h - bh, 0), (h - bh, w - bw), ((h - bh) / 2, (w - bw) / 2)]
        return [torch.tensor([[x, y, x + bw, y + bh]]).expand(n, 4) for y, x in corners]

    def __call__(self, x):
        n, _, h, w = x.shape
        views = [resized_crop(x, box.to(x.device)) for s in self.scales for box in self.boxes(n, h, w, s)]
        return views + [v.flip(3) for v in views]


class MCDropout:
    """Monte Carlo dropout (Gal & Ghahramani 2016): the softmax averaged over `samples` forward passes with
    dropout on (a different mask each pass), instead of the single weight-scaled pass the test uses by default
    (Srivastava et al. 2014 compare the two, section 7.5). Batch norm stays on its running statistics."""

    def __init__(self, samples: Annotated[int, Range(1, integer=True)] = 10,
                 seed: Annotated[int, Range(0, 2 ** 63 - 1, integer=True)] = 0):
        self.samples, self.seed = samples, seed

    def __call__(self, x):
        return [x] * self.samples

    @contextlib.contextmanager
    def stochastic(self, model):
        """Dropout layers in training mode and torch's RNG seeded (then restored) while the passes run."""
        dropouts = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
        if not dropouts:
            log.warning("tta=mc_dropout: the model has no dropout layer, so its %d passes are identical; "
                        "select regularizer=[dropout]", self.samples)
        devices = sorted({p.device.index for p in model.parameters() if p.device.type == "cuda"})
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            for m in dropouts:
                m.train()
            try:
                yield
            finally:
                for m in dropouts:
                    m.eval()

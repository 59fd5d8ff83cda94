"""Data augmentation (conf/augment/, multi-select): batched tensor ops with a random draw per example.

Each option is a callable `aug(x, generator)` on a float batch (N,C,H,W) in [0, 1] on the training device;
an option that needs statistics of the training split also has `fit(images_uint8)`, which train.py calls
through `compose(...).fit(train_images)`. torchvision.transforms.v2 draws ONE set of random parameters for a
whole batch tensor, so the hot ops are written here as batched code with per-example parameters; RandAugment,
which has no batched form, runs torchvision's own per example.
Try: deeprob train dataset=synthetic augment=[flip,crop,color_jitter]
"""
import math
from typing import Annotated

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align
from torchvision.transforms import v2
from torchvision.utils import make_grid

from ..validate import Choice, Range

Spread = Annotated[float, Range(0)]  # a colour jitter's half-width a: factors drawn from [1 − a, 1 + a]


def _interval(name: str, value, bounds: Range, rule: str) -> tuple:
    """value as (low, high) with low ≤ high, both within bounds: a pair's elements and order, which a signature's
    Range cannot say (ValueError naming the parameter only; config.build adds the option's key)."""
    pair = tuple(value)
    if len(pair) != 2 or not all(bounds.allows(v) for v in pair) or pair[0] > pair[1]:
        raise ValueError(f"{name}: {list(pair)} is not allowed; expected [low, high] with {rule}")
    return pair


class Flip:
    """Mirror each image left-right with probability p (mode=random: a fresh draw per image and step), or
    mode=alternate (Keller Jordan's airbench): in the first epoch each image is mirrored with probability p, then
    on every other epoch, i.e. image i is mirrored in epoch e iff bᵢ XOR (e − 1 is odd), so over any two epochs
    the network sees each image once each way. The first-epoch bits bᵢ are a pure function of the image's index
    and the augmentation generator's seed: a resumed run draws the same ones. Needs the batch's indices and epoch
    (train.py passes them; called without them, e.g. for the TensorBoard examples, it draws as mode=random)."""

    positional = True  # Compose passes `indices` and `epoch`

    def __init__(self, p: Annotated[float, Range(0, 1, what="a probability")] = 0.5,
                 mode: Annotated[str, Choice("random", "alternate")] = "random"):
        self.p, self.mode, self.size, self.bits = p, mode, None, None

    def fit(self, images):
        self.size = len(images)  # the first-epoch bits are drawn for every index of the training split
        return self

    def first_epoch_bits(self, seed: int, device) -> torch.Tensor:
        if self.bits is None or self.bits[0] != seed:
            draw = torch.rand(self.size, generator=torch.Generator().manual_seed(seed)) < self.p
            self.bits = (seed, draw.to(device))
        return self.bits[1]

    def __call__(self, x, generator=None, indices=None, epoch=None):
        on = generator.device if generator else x.device
        if self.mode == "alternate" and indices is not None and epoch is not None and self.size is not None:
            seed = generator.initial_seed() if generator is not None else 0
            flip = self.first_epoch_bits(seed, x.device)[indices] ^ ((epoch - 1) % 2 == 1)
        else:
            flip = torch.rand(len(x), generator=generator, device=on) < self.p
        return torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(3), x)


class Crop:
    """Pad by `padding` pixels (reflect or zero), then take a crop of the original size at a random offset."""

    def __init__(self, padding: Annotated[int, Range(0, integer=True)] = 4,
                 mode: Annotated[str, Choice("reflect", "zero")] = "reflect"):
        self.padding, self.mode = padding, mode

    def __call__(self, x, generator=None):
        pad = self.padding
        if pad == 0:
            return x
        n, c, h, w = x.shape
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect" if self.mode == "reflect" else "constant")
        device = generator.device if generator else x.device
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=device).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=device).to(x.device)
        # gather rows then columns with per-example offsets: index = offset + arange(size)
        rows = (dy.view(n, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(n, c, h, w + 2 * pad)
        out = padded.gather(2, rows)
        cols = (dx.view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, c, h, w)
        return out.gather(3, cols)


def _uniform(n, low, high, generator, device):
    """n draws of U(low, high) from generator (on its device), moved to `device`."""
    on = generator.device if generator is not None else device
    return (torch.rand(n, generator=generator, device=on) * (high - low) + low).to(device)


class Scale:
    """Random crop of random area fraction and aspect ratio, resized back to the input size (the lecture's
    "random crops and scales"; Szegedy et al. 2015's random-resized-crop), one box per example, bilinear
    resampling of all boxes at once with torchvision.ops.roi_align."""

    def __init__(self, scale: list[float] = (0.35, 1.0), ratio: list[float] = (0.75, 4 / 3)):
        self.scale = _interval("scale", scale, Range(0, 1, low_open=True), "0 < low ≤ high ≤ 1")
        self.ratio = _interval("ratio", ratio, Range(0, low_open=True), "0 < low ≤ high")

    def boxes(self, n, h, w, generator, device):
        """(n, 4) boxes x1, y1, x2, y2 in pixel units: area fraction ~ U(scale), log aspect ~ U(log ratio)."""
        area = _uniform(n, *self.scale, generator, device)
        aspect = _uniform(n, math.log(self.ratio[0]), math.log(self.ratio[1]), generator, device).exp()
        bw = (area * aspect).sqrt().clamp(max=1) * w  # aspect = width/height, relative to the image's own
        bh = (area / aspect).sqrt().clamp(max=1) * h
        return place(bw, bh, h, w, generator, device)

    def __call__(self, x, generator=None):
        n, _, h, w = x.shape
        return resized_crop(x, self.boxes(n, h, w, generator, x.device))


class ResNetScale:
    """ResNet's scale augmentation (He et al. 2016, section 3.4, after Simonyan & Zisserman 2015): resize the
    image so its short side is L, L drawn per example uniformly from short_side × the crop side, then crop the
    input's own size at a random position. ImageNet's L ∈ [256, 480] for 224 crops is [1.143, 2.143] × the crop.
    Unlike `scale` (random area and aspect ratio) the aspect ratio is kept and the crop is never smaller than
    the output. Batched: the crop of the resized image is a box of the original, resampled with roi_align."""

    def __init__(self, short_side: list[float] = (256 / 224, 480 / 224)):
        self.short_side = _interval("short_side", short_side, Range(1),
                                    "1 ≤ low ≤ high (short side / crop side)")

    def boxes(self, n, h, w, generator, device):
        """(n, 4) boxes x1, y1, x2, y2 in the original image: the h×w crop of the image resized by L/min(h, w)."""
        factor = _uniform(n, *self.short_side, generator, device)  # L / min(h, w): the resize factor
        bh, bw = h / factor, w / factor  # an h×w crop of the resized image is h/factor × w/factor of the original
        return place(bw, bh, h, w, generator, device)

    __call__ = Scale.__call__


def place(bw, bh, h, w, generator, device):
    """(n, 4) boxes x1, y1, x2, y2 of the given widths and heights, each at a uniformly random position."""
    n = len(bw)
    x1 = _uniform(n, 0, 1, generator, device) * (w - bw)
    y1 = _uniform(n, 0, 1, generator, device) * (h - bh)
    return torch.stack([x1, y1, x1 + bw, y1 + bh], 1)


def resized_crop(x, boxes):
    """Crop box i (x1, y1, x2, y2 in pixels) of image i and resize it to the image's size, bilinearly."""
    n, _, h, w = x.shape
    rois = torch.cat([torch.arange(n, device=x.device, dtype=x.dtype).view(n, 1), boxes.to(x.dtype)], 1)
    # aligned=True: pixel i covers [i, i+1), so the full box samples every pixel centre exactly
    return roi_align(x, rois, (h, w), spatial_scale=1.0, sampling_ratio=1, aligned=True)


class ColorJitter:
    """Brightness, contrast, saturation and hue, each factor drawn per example (torchvision's ColorJitter
    ranges: brightness/contrast/saturation factor ~ U(1−a, 1+a), hue shift ~ U(−h, h) of a full turn),
    applied in that fixed order with torchvision's formulas, batched. Deviation: torchvision draws a random
    order of the four per call; a per-example order would need 24 batched branches."""

    def __init__(self, brightness: Spread = 0.4, contrast: Spread = 0.4, saturation: Spread = 0.4,
                 hue: Annotated[float, Range(0, 0.5, what="a fraction of a full turn")] = 0.1):
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    def __call__(self, x, generator=None):
        n, d = len(x), x.device
        factors = [_uniform(n, 1 - a, 1 + a, generator, d).clamp_min(0)
                   for a in (self.brightness, self.contrast, self.saturation)]
        return jitter(x, *factors, _uniform(n, -self.hue, self.hue, generator, d))


def _blend(a, b, ratio):
    """ratio·a + (1−ratio)·b clamped to [0, 1], ratio per example (torchvision's _blend)."""
    ratio = ratio.view(-1, 1, 1, 1)
    return (a * ratio + b * (1 - ratio)).clamp_(0, 1)


def _gray(x):
    """ITU-R 601-2 luma, torchvision's rgb_to_grayscale weights."""
    r, g, b = x.unbind(1)
    return (r * 0.2989 + g * 0.587 + b * 0.114).unsqueeze(1)


def jitter(x, brightness, contrast, saturation, hue):
    """adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue of torchvision with per-example factors."""
    x = _blend(x, torch.zeros_like(x), brightness)
    mean = (_gray(x) if x.shape[1] == 3 else x).mean(dim=(1, 2, 3), keepdim=True)
    x = _blend(x, mean, contrast)
    if x.shape[1] != 3:  # saturation and hue are colour operations; grey images pass unchanged
        return x
    x = _blend(x, _gray(x), saturation)
    return shift_hue(x, hue)


def shift_hue(x, shift):
    """Rotate the HSV hue of each RGB image by shift[i] (a fraction of a full turn)."""
    r, g, b = x.unbind(1)
    v, _ = x.max(1)
    low, _ = x.min(1)
    delta = v - low
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(v == r, ((g - b) / safe) % 6, torch.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h = torch.where(delta > 0, h, torch.zeros_like(h)) / 6
    s = torch.where(v > 0, delta / torch.where(v > 0, v, torch.ones_like(v)), torch.zeros_like(v))
    h = (h + shift.view(-1, 1, 1)) % 1
    # HSV → RGB: channel n ∈ (5, 3, 1) = v − v·s·clamp(min(k, 4−k), 0, 1), k = (n + 6h) mod 6
    k = (torch.tensor([5.0, 3.0, 1.0], device=x.device).view(1, 3, 1, 1) + 6 * h.unsqueeze(1)) % 6
    return (v.unsqueeze(1) * (1 - s.unsqueeze(1) * torch.minimum(k, 4 - k).clamp(0, 1))).clamp_(0, 1)


class PCAColor:
    """AlexNet's "fancy PCA" (Krizhevsky et al. 2012, section 4.1): add Σᵢ αᵢ·σᵢ·uᵢ to every pixel of an image,
    uᵢ the principal axes of the training split's RGB pixels, αᵢ ~ N(0, std²) drawn per example. σᵢ = √λᵢ,
    the data's spread along uᵢ (AlexNet writes λᵢ for 0..255 pixels; √λ makes the offset independent of the
    pixel scale, as in fb.resnet.torch). Not clamped: every pixel of an image moves by the same offset."""

    def __init__(self, std: Annotated[float, Range(0)] = 0.1):
        self.std, self.axes = std, None

    def fit(self, images):
        """Principal axes of the training pixels' colours (C×C covariance, cached)."""
        from .preprocess import cached, eigh_descending, patch_moments

        def compute(im):
            values, vectors = eigh_descending(patch_moments(im, 1)[1])
            return {"values": values, "vectors": vectors}

        stats = cached(images, "pixel_eigen", compute)
        self.axes = (stats["vectors"] * stats["values"].sqrt()).float()  # column i = σᵢ·uᵢ
        return self

    def __call__(self, x, generator=None):
        if self.axes is None:
            raise RuntimeError("PCAColor.fit(train_images) must run before augmenting")
        on = generator.device if generator is not None else x.device
        alpha = torch.randn(len(x), self.axes.shape[0], generator=generator, device=on).to(x.device) * self.std
        offset = alpha @ self.axes.to(x.device).T  # (N, C)
        return x + offset.view(len(x), -1, 1, 1)


class RandAugment:
    """RandAugment (Cubuk et al. 2020): N ops of magnitude M from the lecture's 14, drawn per example.
    torchvision.transforms.v2.RandAugment on each uint8 image (it has no per-example batched form), on the
    CPU, with torch's global RNG seeded from `generator` inside torch.random.fork_rng (repeatable, and the
    caller's global RNG state is left untouched)."""

    def __init__(self, num_ops: Annotated[int, Range(0, integer=True)] = 2,
                 magnitude: Annotated[int, Range(0, integer=True)] = 9,
                 num_magnitude_bins: Annotated[int, Range(2, integer=True)] = 31):
        if magnitude >= num_magnitude_bins:  # depends on another parameter: checked here
            raise ValueError(f"magnitude: {magnitude!r} is not allowed; expected an integer in "
                             f"0..{num_magnitude_bins - 1} (num_magnitude_bins − 1)")
        self.op = v2.RandAugment(num_ops, magnitude, num_magnitude_bins)

    def __call__(self, x, generator=None):
        on = generator.device if generator is not None else x.device
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=on))
        images = x.mul(255).round_().to("cpu", torch.uint8)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = torch.stack([self.op(image) for image in images])
        return out.to(x.device).float().div_(255)


class Compose:
    """The selected augmentations applied in order; an empty selection is the identity."""

    def __init__(self, augments):
        self.augments = list(augments)

    def fit(self, images):
        """Give every option that needs training statistics the training split's uint8 images."""
        for aug in self.augments:
            if hasattr(aug, "fit"):
                aug.fit(images)
        return self

    def __call__(self, x, generator=None, indices=None, epoch=None):
        """`indices` (the batch's positions in the training split) and `epoch` reach the options that declare
        `positional = True` (flip's alternate mode); the others see only the batch and the generator."""
        for aug in self.augments:
            x = aug(x, generator, indices=indices, epoch=epoch) if getattr(aug, "positional", False) else aug(x, generator)
        return x


def compose(augments):
    """Apply the selected augmentations in order; an empty selection is the identity."""
    return Compose(augments)


def log_examples(writer, images, augment, seed: int, draws: int = 3):
    """Write a captioned grid to TensorBoard (tag augment/examples): one row of training images, then `draws`
    rows of augmented versions (their own generator, so training's augmentation stream is unchanged)."""
    from tensorboard.data_compat import migrate_value
    from torch.utils.tensorboard.summary import image

    generator = torch.Generator(images.device).manual_seed(seed)
    x = images.float().div(255)
    rows = [x] + [augment(x, generator).clamp(0, 1) for _ in range(draws)]
    summary = image("augment/examples", make_grid(torch.cat(rows).cpu(), nrow=len(x), padding=1), dataformats="CHW")
    names = [type(a).__name__ for a in getattr(augment, "augments", [augment])]
    summary.value[0].metadata.summary_description = (  # shown as the image card's description
        f"Top row: {len(x)} training images as loaded (before preprocessing). Rows 2–{draws + 1}: {draws} independent "
        f"random draws of the training augmentation ({' → '.join(names) if names else 'none selected: identity'}) "
        f"applied to the same images; each column is one image.")
    # written in the image plugin's own format and metadata (TensorBoard's converter of a legacy image): TensorBoard's
    # default fast loader drops a legacy image's description, and a legacy value with metadata but no plugin makes
    # readers warn "oddly not associated with a plugin"
    summary.value[0].CopyFrom(migrate_value(summary.value[0]))
    writer.file_writer.add_summary(summary, 0)

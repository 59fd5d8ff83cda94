"""Augmentation (conf/augment/): per-example randomness that repeats with the seed, the ops' own formulas
(torchvision's where it has them), and the image grid logged to TensorBoard."""
import pytest
import torch
from omegaconf import OmegaConf
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from conftest import FAST, run_cli, run_dirs
from deeprob_cli.components import augment as A
from deeprob_cli.config import CONFIG_DIR, build, option_names

OPTIONS = [name for name in option_names("augment") if name != "none"]


def images(n=16, size=16, seed=0):
    return (torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 255).to(torch.uint8)


def build_option(name):
    node = OmegaConf.load(CONFIG_DIR / "augment" / f"{name}.yaml")
    return A.compose([build(node, f"augment.{name}")]).fit(images(64, seed=1))


def run(aug, x, seed):
    return aug(x.clone(), torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", OPTIONS)
def test_every_option_is_per_example_and_seeded(name):
    aug = build_option(name)
    x = images(1).float().div(255).expand(16, -1, -1, -1).contiguous()  # 16 copies of one image
    out = run(aug, x, 0)
    assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()
    assert torch.equal(out, run(aug, x, 0))  # same seed, same draws
    assert not torch.equal(out, run(aug, x, 1))
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) > 1  # one draw per example, not one per batch


def test_flip_twice_is_the_identity_and_mirrors():
    x = images().float() / 255
    flip = A.Flip(p=1.0)
    assert torch.equal(flip(flip(x)), x)
    assert torch.equal(flip(x), x.flip(3))


@pytest.mark.parametrize("mode", ["reflect", "zero"])
def test_crop_keeps_shape_and_is_a_window_of_the_padded_image(mode):
    x = images().float() / 255
    assert torch.equal(A.Crop(padding=0, mode=mode)(x, torch.Generator().manual_seed(0)), x)
    out = A.Crop(padding=4, mode=mode)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (4,) * 4, mode="reflect" if mode == "reflect" else "constant")
    for i in range(len(x)):
        windows = [padded[i, :, dy:dy + 16, dx:dx + 16] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(out[i], w) for w in windows)


def test_scale_full_box_is_identity_and_boxes_match_torchvision_resized_crop():
    x = images().float() / 255
    n = len(x)
    assert torch.equal(A.resized_crop(x, torch.tensor([[0.0, 0, 16, 16]]).repeat(n, 1)), x)
    out = A.resized_crop(x, torch.tensor([[2.0, 3, 12, 14]]).repeat(n, 1))  # x1, y1, x2, y2
    ref = TF.resized_crop(x, top=3, left=2, height=11, width=10, size=[16, 16], antialias=False)
    # same bilinear sampling; at the border roi_align reads the pixel just outside the box, torchvision clamps
    assert (out - ref)[..., 1:-1, 1:-1].abs().max() < 1e-6
    scale = A.Scale(scale=(0.3, 0.6), ratio=(0.5, 2.0))
    boxes = scale.boxes(1000, 16, 16, torch.Generator().manual_seed(0), "cpu")
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / 256
    assert boxes.min() >= 0 and boxes.max() <= 16
    assert area.max() <= 0.6 + 1e-5 and area.min() >= 0.25  # clamping a long side to the image may shrink it


def test_resnet_scale_crops_the_image_size_out_of_a_random_short_side():
    """A box of the original is the h×w crop of the image resized by L/short side: its side is h·short/L with
    L/short ~ U(low, high); the box lies in the image; L = short side (factor 1) is the image itself."""
    aug = A.ResNetScale(short_side=(1.25, 2.5))
    boxes = aug.boxes(4000, 16, 24, torch.Generator().manual_seed(0), "cpu")
    factor_h = 16 / (boxes[:, 3] - boxes[:, 1])
    factor_w = 24 / (boxes[:, 2] - boxes[:, 0])
    assert torch.allclose(factor_h, factor_w, rtol=1e-5)  # aspect ratio kept
    assert factor_h.min() >= 1.25 - 1e-4 and factor_h.max() <= 2.5 + 1e-4
    assert abs(factor_h.mean().item() - 1.875) < 0.02 and abs(factor_h.std().item() - 1.25 / 12 ** 0.5) < 0.02
    assert boxes[:, :2].min() >= 0 and (boxes[:, 2] <= 24 + 1e-4).all() and (boxes[:, 3] <= 16 + 1e-4).all()
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    assert centre_x.min() < 24 / 2 - 3 and centre_x.max() > 24 / 2 + 3  # random positions
    x = images().float() / 255
    assert torch.equal(A.ResNetScale(short_side=(1.0, 1.0))(x, torch.Generator().manual_seed(0)), x)
    with pytest.raises(ValueError, match=r"^short_side: \[0\.5, 2\.0\] is not allowed"):
        A.ResNetScale(short_side=(0.5, 2.0))


def test_color_jitter_equals_torchvision_per_example():
    x = images().float() / 255
    g = torch.Generator().manual_seed(0)
    b, c, s = torch.rand(3, len(x), generator=g) * 0.8 + 0.6
    h = torch.rand(len(x), generator=g) - 0.5
    ref = torch.stack([TF.adjust_hue(TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(
        x[i], b[i].item()), c[i].item()), s[i].item()), h[i].item()) for i in range(len(x))])
    assert (A.jitter(x, b, c, s, h) - ref).abs().max() < 1e-5


def test_pca_color_moves_every_pixel_by_one_offset_along_the_colour_axes():
    train = images(64, seed=1)
    aug = A.PCAColor(std=0.1).fit(train)
    pixels = train.permute(0, 2, 3, 1).reshape(-1, 3).double() / 255
    values, vectors = torch.linalg.eigh(torch.cov(pixels.T, correction=0))
    # columns σᵢ·uᵢ (up to the sign of each eigenvector)
    assert torch.allclose(aug.axes.abs().sum(0).sort().values,
                          (vectors * values.sqrt()).abs().sum(0).sort().values.float(), atol=1e-5)
    x = images().float() / 255
    delta = aug(x, torch.Generator().manual_seed(0)) - x
    per_image = delta[:, :, :1, :1]
    assert (delta - per_image).abs().max() < 1e-6  # one RGB offset for all pixels of an image
    assert len({tuple(d.flatten().tolist()) for d in per_image}) == len(x)  # a different one per image


def test_randaugment_is_torchvision_per_example_on_uint8():
    aug = A.RandAugment(num_ops=2, magnitude=9)
    x = images().float() / 255
    out = aug(x, torch.Generator().manual_seed(0))
    assert torch.equal(out * 255, (out * 255).round())  # uint8 values: torchvision ran on uint8 images
    # reproduce it: torchvision's v2.RandAugment on each uint8 image, torch seeded with the draw from the generator
    seed = int(torch.randint(0, 2**62, (1,), generator=torch.Generator().manual_seed(0)))
    reference = v2.RandAugment(2, 9)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        expected = torch.stack([reference(image) for image in images()])
    assert torch.equal((out * 255).round().to(torch.uint8), expected)
    assert not torch.equal(out, x)
    state = torch.get_rng_state()
    aug(x, torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left as it was


def test_augmented_examples_are_logged_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_cli("train", *FAST, "augment=[flip,crop,color_jitter]", cwd=tmp_path)
    from tensorboard.util.tensor_util import make_ndarray

    acc = EventAccumulator(str(run_dirs(tmp_path)[0]), size_guidance={"tensors": 0})
    acc.Reload()
    assert acc.SummaryMetadata("augment/examples").plugin_data.plugin_name == "images"  # the image plugin's format
    width, height, png = make_ndarray(acc.Tensors("augment/examples")[0].tensor_proto)
    assert png.startswith(b"\x89PNG")
    assert (int(width), int(height)) == (8 * 17 + 1, 4 * 17 + 1)  # 8 images of 16 px, 4 rows, 1 px padding

"""Fidelity to imagecorruptions-imaug (ImageNet parameters) on 3 real ImageNet images at 224 px.

Tolerances (0..255 units):
  deterministic corruptions, per pixel: max |ours - ref| <= 1 and <= 0.5 % of values differ;
  noise: mean of d = out - clean within 1.0, std of d and mean |d| within 3 % (relative);
  glass/snow/spatter-mud: std of d and mean |d| within 8 %/12 %/15 %;
  motion blur with the reference's own kernel code and the same angle: per pixel max <= 1;
  elastic (original Hendrycks algorithm, not imagecorruptions' variant): vs cv2.warpAffine +
  scipy map_coordinates with the same random draws, mean |diff| < 0.5, 99.9th pct <= 4;
  spatter water mask vs the OpenCV pipeline on the same liquid layer: per pixel max <= 1 level;
  plasma fractal (fog): mean/std/roughness of 24 maps within 10 % of the reference's.
"""
import math

import numpy as np
import pytest
import torch

imagecorruptions = pytest.importorskip("imagecorruptions")
cv2 = pytest.importorskip("cv2")
from imagecorruptions import corrupt  # noqa: E402

from corruptions.generate import PARAMS, RECORDS, apply_corruption  # noqa: E402
from corruptions.ops._rng import ImageRNG, image_keys  # noqa: E402

N_IMAGES = 3


_CACHE: dict = {}


@pytest.fixture
def imgs224(imagenet_samples):
    if "imgs" not in _CACHE:
        _CACHE["imgs"] = _load(imagenet_samples)
    return _CACHE["imgs"]


def _load(folder):
    from PIL import Image
    from torchvision import transforms

    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])
    files = sorted(p for p in folder.iterdir() if p.suffix.upper() == ".JPEG")[:N_IMAGES]
    return np.stack([np.asarray(tf(Image.open(f).convert("RGB"))) for f in files])


def _ours(images, name, s, params="imagenet", seed=0):
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    return apply_corruption(x, name, s, params=params, seed=seed).permute(0, 2, 3, 1).numpy()


def _ref(images, name, s):
    np.random.seed(1234)
    kw = lambda i: {"seed": 99 + i} if name in ("impulse_noise", "glass_blur") else {}  # noqa: E731
    return np.stack([corrupt(im, corruption_name=name, severity=s, **kw(i)) for i, im in enumerate(images)])


def _stats(clean, out):
    d = out.astype(np.float64) - clean
    return d.mean(), d.reshape(len(d), -1).std(1).mean(), np.abs(d).mean()


@pytest.mark.parametrize("name", ["brightness", "contrast", "saturate", "pixelate", "jpeg_compression",
                                  "defocus_blur", "gaussian_blur", "zoom_blur"])
def test_deterministic_per_pixel(name, imgs224):
    # pixelate: we upsample with BOX like Hendrycks' scripts, imagecorruptions with NEAREST; the
    # two differ only where a box straddles two source pixels (measured: 1-3 % of values, by 1)
    # defocus_blur: cv2.filter2D's float64 (DFT) sums leave exact levels at k - 1e-13, which the
    # reference then truncates to k - 1; we compute in float32 and do not (measured <= 4 %)
    frac = 0.08 if name in ("pixelate", "defocus_blur") else 0.005
    for s in (1, 3, 5):
        diff = np.abs(_ours(imgs224, name, s).astype(int) - _ref(imgs224, name, s).astype(int))
        assert diff.max() <= 1, (name, s, diff.max())
        assert (diff > 0).mean() <= frac, (name, s, (diff > 0).mean())


@pytest.mark.parametrize("size,params", [(32, "cifar10"), (224, "imagenet")])
def test_pixelate_is_pil_box_down_and_up(size, params, imgs224):
    from PIL import Image

    images = np.ascontiguousarray(imgs224[:, :size, :size])
    for s in range(1, 6):
        c = PARAMS[params]["pixelate"][s - 1]
        want = np.stack([np.asarray(Image.fromarray(im).resize((int(size * c),) * 2, Image.BOX)
                                    .resize((size, size), Image.BOX)) for im in images])
        assert np.array_equal(_ours(images, "pixelate", s, params=params), want), (size, s)


@pytest.mark.parametrize("name,rel", [
    ("gaussian_noise", .03), ("shot_noise", .03), ("impulse_noise", .03), ("speckle_noise", .03),
    ("snow", .12),
    pytest.param("glass_blur", .08, marks=pytest.mark.slow),  # the reference compiles numba (~3 s)
])
def test_random_perturbation_statistics(name, rel, imgs224):
    for s in (1, 5):
        m1, s1, a1 = _stats(imgs224, _ours(imgs224, name, s))
        m2, s2, a2 = _stats(imgs224, _ref(imgs224, name, s))
        tol_mean = 1.0 if name != "snow" else 0.12 * abs(m2)
        assert abs(m1 - m2) <= tol_mean, (name, s, m1, m2)
        assert abs(s1 / s2 - 1) <= rel, (name, s, s1, s2)
        assert abs(a1 / a2 - 1) <= rel, (name, s, a1, a2)


def test_spatter_mud_statistics(imgs224):
    for s in (4, 5):
        m1, s1, a1 = _stats(imgs224, _ours(imgs224, "spatter", s))
        m2, s2, a2 = _stats(imgs224, _ref(imgs224, "spatter", s))
        assert abs(a1 / a2 - 1) <= 0.15 and abs(s1 / s2 - 1) <= 0.15, (s, a1, a2, s1, s2)


def test_motion_blur_kernel_matches_reference_code(imgs224):
    from imagecorruptions.corruptions import _motion_blur
    from corruptions.ops.blur import motion_blur_layer

    x = torch.from_numpy(imgs224).permute(0, 3, 1, 2).double()
    for radius, sigma in PARAMS["imagenet"]["motion_blur"][::2]:
        angles = torch.tensor([-44.0, 7.5, 30.0])
        mine = motion_blur_layer(x, radius, sigma, angles).permute(0, 2, 3, 1).numpy()
        for i, a in enumerate(angles.tolist()):
            ref = _motion_blur(imgs224[i], radius=radius, sigma=sigma, angle=a)
            assert np.abs(mine[i] - ref).max() < 1e-3


def test_elastic_matches_opencv_scipy_with_same_draws(imgs224):
    """The original make_imagenet_c / make_cifar_c elastic_transform, fed our random draws."""
    from scipy.ndimage import map_coordinates
    from skimage.filters import gaussian

    for params, images in (("imagenet", imgs224[:2]), ("cifar10", imgs224[:2, ::7, ::7][:, :32, :32])):
        for s in (1, 2, 5):
            alpha, sigma, affine = PARAMS[params]["elastic_transform"][s - 1]
            ours = _ours(np.ascontiguousarray(images), "elastic_transform", s, params=params)
            keys = image_keys(0, torch.arange(len(images)), RECORDS["elastic_transform"].stream_id, s)
            rng = ImageRNG(keys)
            shift = rng.uniform_range(0, (3, 2), -affine, affine, dtype=torch.float64).float().numpy()
            h, w = images.shape[1:3]
            fields = rng.uniform_range(1, (2, h, w), -1.0, 1.0, dtype=torch.float64).numpy()
            for i, im in enumerate(images):
                image = im.astype(np.float32) / 255.0
                centre = np.float32((h, w)) // 2
                sq = min(h, w) // 3
                pts1 = np.float32([centre + sq, [centre[0] + sq, centre[1] - sq], centre - sq])
                M = cv2.getAffineTransform(pts1, pts1 + shift[i])
                image = cv2.warpAffine(image, M, (w, h), borderMode=cv2.BORDER_REFLECT_101)
                if alpha:
                    dx = (gaussian(fields[i, 0], sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
                    dy = (gaussian(fields[i, 1], sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
                    x, y, z = np.meshgrid(np.arange(w), np.arange(h), np.arange(3))
                    idx = (np.reshape(y + dy[..., None], (-1, 1)), np.reshape(x + dx[..., None], (-1, 1)),
                           np.reshape(z, (-1, 1)))
                    image = map_coordinates(image, idx, order=1, mode="reflect").reshape(h, w, 3)
                ref = np.uint8(np.clip(image, 0, 1) * 255)
                diff = np.abs(ours[i].astype(int) - ref.astype(int))
                assert diff.mean() < 0.5 and np.percentile(diff, 99.9) <= 4, (params, s, diff.mean(), diff.max())


def test_spatter_water_mask_matches_opencv_pipeline():
    from skimage.filters import gaussian
    from corruptions.ops._spatter import water_mask

    for params in ("cifar10", "imagenet"):
        for loc, scale, sigma, thr, intensity, mode in PARAMS[params]["spatter"][:3]:
            rng = np.random.default_rng(5)
            size = 32 if params == "cifar10" else 224
            liquid = gaussian(rng.normal(size=(size, size), loc=loc, scale=scale), sigma=sigma)
            liquid[liquid < thr] = 0
            mine = water_mask(torch.from_numpy(liquid)[None, None], intensity)[0, 0].numpy()
            l8 = (liquid * 255).astype(np.uint8)
            dist = 255 - cv2.Canny(l8, 50, 150)
            dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
            _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
            dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
            dist = cv2.equalizeHist(dist)
            dist = cv2.filter2D(dist, cv2.CV_8U, np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]))
            dist = cv2.blur(dist, (3, 3)).astype(np.float32)
            m = l8 * dist
            m = m / m.max() * intensity
            # compare the water colour added to the image, in 0..255 units
            assert np.abs(mine - m).max() * 238 <= 1.0, (params, np.abs(mine - m).max() * 238)


def test_fog_plasma_statistics():
    from imagecorruptions.corruptions import plasma_fractal as ref_plasma
    from corruptions.ops.weather import plasma_fractal

    def summary(maps):
        maps = np.asarray(maps, dtype=np.float64)
        rough = np.abs(np.diff(maps, axis=-1)).mean()
        return maps.mean(), maps.std(), rough

    for decay in (2.0, 1.4):
        np.random.seed(0)
        ref = [ref_plasma(mapsize=256, wibbledecay=decay) for _ in range(24)]
        rng = ImageRNG(image_keys(0, torch.arange(24), 9, 1))
        mine = plasma_fractal(rng, 0, 256, decay, torch.device("cpu")).numpy()
        for a, b in zip(summary(mine), summary(ref)):
            assert abs(a / b - 1) <= 0.10, (decay, summary(mine), summary(ref))


@pytest.mark.slow
def test_frost_is_a_blend_with_a_texture_crop():
    """CIFAR frost: out == clip(c0 * x + c1 * crop) for some crop of the x0.2 textures (<= 1 level),
    and the x0.2 textures equal cv2.resize of imagecorruptions' files exactly."""
    import importlib.resources
    from corruptions.ops.weather import frost_textures

    src = importlib.resources.files("imagecorruptions") / "frost"
    texs = frost_textures("cifar10")
    for i, name in enumerate(["frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg"]):
        with importlib.resources.as_file(src / name) as path:
            want = cv2.resize(cv2.imread(str(path)), (0, 0), fx=0.2, fy=0.2)[..., ::-1]
        assert np.array_equal((texs[i] * 255).round().byte().permute(1, 2, 0).numpy(), want)

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(1, 3, 32, 32, generator=g) * 255).to(torch.uint8)
    c0, c1 = PARAMS["cifar10"]["frost"][2]
    out = apply_corruption(x, "frost", 3).double()
    best = math.inf
    for tex in texs:
        t = tex.double() * 255
        crops = t.unfold(1, 32, 1).unfold(2, 32, 1)  # 3, Hc, Wc, 32, 32
        pred = torch.floor((c0 * x[0].double()[:, None, None] + c1 * crops).clamp(0, 255) + 2e-3)
        err = (pred - out[0][:, None, None]).abs().amax(dim=(0, 3, 4))
        best = min(best, err.min().item())
    assert best <= 1


def test_cifar_parameters_per_pixel_against_make_cifar_c_formulas(cifar10_test_npz):
    """CIFAR-10-C parameters, 32 px, 3 real CIFAR images: the deterministic corruptions against
    make_cifar_c.py's own formulas (skimage / cv2 / scipy / PIL) with the table's values."""
    import io
    import skimage as sk
    from PIL import Image
    from imagecorruptions.corruptions import clipped_zoom, disk

    images = np.load(cifar10_test_npz)["x"][:3]
    P = PARAMS["cifar10"]

    def brightness(x, c):
        x = sk.color.rgb2hsv(x / 255.0)
        x[..., 2] = np.clip(x[..., 2] + c, 0, 1)
        return np.clip(sk.color.hsv2rgb(x), 0, 1) * 255

    def saturate(x, c):
        x = sk.color.rgb2hsv(x / 255.0)
        x[..., 1] = np.clip(x[..., 1] * c[0] + c[1], 0, 1)
        return np.clip(sk.color.hsv2rgb(x), 0, 1) * 255

    def contrast(x, c):
        x = x / 255.0
        m = x.mean(axis=(0, 1), keepdims=True)
        return np.clip((x - m) * c + m, 0, 1) * 255

    def gaussian_blur(x, c):
        return np.clip(sk.filters.gaussian(x / 255.0, sigma=c, channel_axis=-1), 0, 1) * 255

    def defocus_blur(x, c):
        k = disk(radius=c[0], alias_blur=c[1])
        return np.clip(np.stack([cv2.filter2D(x[..., d] / 255.0, -1, k) for d in range(3)], -1), 0, 1) * 255

    def zoom_blur(x, c):
        x = (x / 255.0).astype(np.float32)
        zs = np.arange(1, c[0], c[1])
        out = sum(clipped_zoom(x, z)[:32, :32] for z in zs)
        return np.clip((x + out) / (len(zs) + 1), 0, 1) * 255

    def jpeg_compression(x, q):
        buf = io.BytesIO()
        Image.fromarray(x).save(buf, "JPEG", quality=q)
        return np.asarray(Image.open(buf))

    fns = {"brightness": (brightness, 0), "saturate": (saturate, 0), "contrast": (contrast, 0),
           "gaussian_blur": (gaussian_blur, .02), "defocus_blur": (defocus_blur, .12),
           "zoom_blur": (zoom_blur, .02), "jpeg_compression": (jpeg_compression, 0)}
    for name, (fn, frac) in fns.items():
        for s in range(1, 6):
            want = np.stack([np.uint8(fn(im, P[name][s - 1])) for im in images])
            diff = np.abs(_ours(images, name, s, params="cifar10").astype(int) - want.astype(int))
            assert diff.max() <= 1 and (diff > 0).mean() <= frac, (name, s, diff.max(), (diff > 0).mean())

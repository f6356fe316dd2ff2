"""The 19 corruptions, one record each: name, random-stream id, category, kernel and the parameters
per severity 1..5 of both sets, copied from shared/reference/corruptions.md.

`cifar10` = Hendrycks & Dietterich's make_cifar_c.py (CIFAR-10-C), `imagenet` = make_imagenet_c.py
(ImageNet-C, also imagecorruptions). Severity k of one set is NOT severity k of the other.
Tuple layouts (the same for both sets):
  glass_blur (sigma, max_delta, iterations); defocus_blur (radius, alias_blur);
  motion_blur (radius, sigma); zoom_blur (end, step) -> zoom factors arange(1, end, step);
  snow (loc, scale, zoom, threshold, blur radius, blur sigma, image blend);
  frost (image weight, frost weight); fog (strength, wibble decay);
  saturate (factor, offset); spatter (loc, scale, sigma, threshold, intensity|mud sigma, mode);
  elastic_transform (alpha, sigma, affine max shift) in pixels = size factor x table entries.

Everything else here (the name lists, CATEGORIES, PARAMS) is a view of RECORDS.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .ops.blur import defocus_blur, gaussian_blur, glass_blur, motion_blur, zoom_blur
from .ops.digital import (brightness, contrast, elastic_transform, jpeg_compression, pixelate,
                          saturate)
from .ops.noise import gaussian_noise, impulse_noise, shot_noise, speckle_noise
from .ops.weather import fog, frost, snow, spatter


@dataclass(frozen=True)
class Corruption:
    name: str
    # Keys every random draw (ops._rng.image_keys): changing it changes every generated image,
    # so it is pinned per corruption (tests) and never derived from a list position.
    stream_id: int
    category: str  # noise, blur, weather, digital (the 15 of the benchmark) or extra
    kernel: Callable  # fn(x, p, ctx), corruptions/ops
    cifar10: tuple  # 5 severities
    imagenet: tuple
    # uint8 input: computed in float64 in the reference's order (so its truncations are
    # reproduced) instead of float32 plus a nudge; see generate.py
    float64: bool = False
    chunk_scale: float = 1.0  # x generate's pixels per chunk (kernels with many small ops: 2)


def _elastic(size: int, rows) -> tuple:
    return tuple(tuple(size * v for v in row) for row in rows)


_RECORDS = (  # the 15 in the paper's order, then the 4 extra ("validation") ones
    Corruption("gaussian_noise", 0, "noise", gaussian_noise,
               cifar10=(.04, .06, .08, .09, .10), imagenet=(.08, .12, .18, .26, .38)),
    Corruption("shot_noise", 1, "noise", shot_noise,
               cifar10=(500, 250, 100, 75, 50), imagenet=(60, 25, 12, 5, 3)),
    Corruption("impulse_noise", 2, "noise", impulse_noise,
               cifar10=(.01, .02, .03, .05, .07), imagenet=(.03, .06, .09, .17, .27)),
    Corruption("defocus_blur", 3, "blur", defocus_blur, chunk_scale=0.5,
               cifar10=((.3, .4), (.4, .5), (.5, .6), (1, .2), (1.5, .1)),
               imagenet=((3, .1), (4, .5), (6, .5), (8, .5), (10, .5))),
    Corruption("glass_blur", 4, "blur", glass_blur,
               cifar10=((.05, 1, 1), (.25, 1, 1), (.4, 1, 1), (.25, 1, 2), (.4, 1, 2)),
               imagenet=((.7, 1, 2), (.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))),
    Corruption("motion_blur", 5, "blur", motion_blur,
               cifar10=((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
               imagenet=((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))),
    Corruption("zoom_blur", 6, "blur", zoom_blur,
               cifar10=((1.06, .01), (1.11, .01), (1.16, .01), (1.21, .01), (1.26, .01)),
               imagenet=((1.11, .01), (1.16, .01), (1.21, .02), (1.26, .02), (1.31, .03))),
    Corruption("snow", 7, "weather", snow, chunk_scale=2.0,
               cifar10=((.1, .2, 1, .6, 8, 3, .95), (.1, .2, 1, .5, 10, 4, .9),
                        (.15, .3, 1.75, .55, 10, 4, .9), (.25, .3, 2.25, .6, 12, 6, .85),
                        (.3, .3, 1.25, .65, 14, 12, .8)),
               imagenet=((.1, .3, 3, .5, 10, 4, .8), (.2, .3, 2, .5, 12, 4, .7),
                         (.55, .3, 4, .9, 12, 8, .7), (.55, .3, 4.5, .85, 12, 8, .65),
                         (.55, .3, 2.5, .85, 12, 12, .55))),
    Corruption("frost", 8, "weather", frost,
               cifar10=((1, .2), (1, .3), (.9, .4), (.85, .4), (.75, .45)),
               imagenet=((1, .4), (.8, .6), (.7, .7), (.65, .7), (.6, .75))),
    Corruption("fog", 9, "weather", fog,
               cifar10=((.2, 3), (.5, 3), (.75, 2.5), (1, 2), (1.5, 1.75)),
               imagenet=((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4))),
    Corruption("brightness", 10, "weather", brightness, float64=True,
               cifar10=(.05, .1, .15, .2, .3), imagenet=(.1, .2, .3, .4, .5)),
    Corruption("contrast", 11, "digital", contrast, float64=True,
               cifar10=(.75, .5, .4, .3, .15), imagenet=(.4, .3, .2, .1, .05)),
    Corruption("elastic_transform", 12, "digital", elastic_transform, chunk_scale=2.0,
               cifar10=_elastic(32, [(0, 0, .08), (.05, .2, .07), (.08, .06, .06), (.1, .04, .05),
                                     (.1, .03, .03)]),
               imagenet=_elastic(244, [(2, .7, .1), (2, .08, .2), (.05, .01, .02), (.07, .01, .02),
                                       (.12, .01, .02)])),
    Corruption("pixelate", 13, "digital", pixelate,
               cifar10=(.95, .9, .85, .75, .65), imagenet=(.6, .5, .4, .3, .25)),
    Corruption("jpeg_compression", 14, "digital", jpeg_compression,
               cifar10=(80, 65, 58, 50, 40), imagenet=(25, 18, 15, 10, 7)),
    Corruption("speckle_noise", 15, "extra", speckle_noise,
               cifar10=(.06, .1, .12, .16, .2), imagenet=(.15, .2, .35, .45, .6)),
    Corruption("gaussian_blur", 16, "extra", gaussian_blur,
               cifar10=(.4, .6, .7, .8, 1), imagenet=(1, 2, 3, 4, 6)),
    Corruption("spatter", 17, "extra", spatter, chunk_scale=2.0,
               cifar10=((.62, .1, .7, .7, .5, 0), (.65, .1, .8, .7, .5, 0), (.65, .3, 1, .69, .5, 0),
                        (.65, .1, .7, .69, .6, 1), (.65, .1, .5, .68, .6, 1)),
               imagenet=((.65, .3, 4, .69, .6, 0), (.65, .3, 3, .68, .6, 0), (.65, .3, 2, .68, .5, 0),
                         (.65, .3, 1, .65, 1.5, 1), (.67, .4, 1, .65, 1.5, 1))),
    Corruption("saturate", 18, "extra", saturate, float64=True,
               cifar10=((.3, 0), (.1, 0), (1.5, 0), (2, .1), (2.5, .2)),
               imagenet=((.3, 0), (.1, 0), (2, 0), (5, .1), (20, .2))),
)
RECORDS: dict[str, Corruption] = {r.name: r for r in _RECORDS}

ALL_CORRUPTIONS: tuple[str, ...] = tuple(RECORDS)
BENCHMARK_CORRUPTIONS: tuple[str, ...] = tuple(r.name for r in _RECORDS if r.category != "extra")
EXTRA_CORRUPTIONS: tuple[str, ...] = tuple(r.name for r in _RECORDS if r.category == "extra")
CATEGORIES: dict[str, tuple[str, ...]] = {
    c: tuple(r.name for r in _RECORDS if r.category == c)
    for c in ("noise", "blur", "weather", "digital", "extra")}
PARAMS: dict[str, dict[str, tuple]] = {
    "cifar10": {r.name: r.cifar10 for r in _RECORDS},
    "imagenet": {r.name: r.imagenet for r in _RECORDS},
}
# Named sets of corruptions; "benchmark" is the default wherever a set is chosen.
GROUPS: dict[str, tuple[str, ...]] = {
    "benchmark": BENCHMARK_CORRUPTIONS, "extra": EXTRA_CORRUPTIONS, "all": ALL_CORRUPTIONS}


def corruption_group(name: str = "benchmark") -> tuple[str, ...]:
    """The corruptions of a group: 'benchmark' (the 15), 'extra' (the 4) or 'all' (the 19)."""
    if not isinstance(name, str) or name not in GROUPS:
        raise ValueError(f"unknown corruption group {name!r}; choose one of {', '.join(GROUPS)}")
    return GROUPS[name]

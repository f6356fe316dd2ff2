"""Corruption parameters per severity 1..5, copied from shared/reference/corruptions.md.

`cifar10` = Hendrycks & Dietterich's make_cifar_c.py (CIFAR-10-C), `imagenet` = make_imagenet_c.py
(ImageNet-C, also imagecorruptions). Severity k of one set is NOT severity k of the other.
Tuple layouts (the same for both sets):
  glass_blur (sigma, max_delta, iterations); defocus_blur (radius, alias_blur);
  motion_blur (radius, sigma); zoom_blur (end, step) -> zoom factors arange(1, end, step);
  snow (loc, scale, zoom, threshold, blur radius, blur sigma, image blend);
  frost (image weight, frost weight); fog (strength, wibble decay);
  saturate (factor, offset); spatter (loc, scale, sigma, threshold, intensity|mud sigma, mode);
  elastic_transform (alpha, sigma, affine max shift) in pixels = size factor x table entries.
"""
from __future__ import annotations

# The 15 benchmark corruptions in the published order, and the 4 extra ("validation") ones.
BENCHMARK_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL_CORRUPTIONS: tuple[str, ...] = BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS
CATEGORIES: dict[str, tuple[str, ...]] = {
    "noise": BENCHMARK_CORRUPTIONS[0:3], "blur": BENCHMARK_CORRUPTIONS[3:7],
    "weather": BENCHMARK_CORRUPTIONS[7:11], "digital": BENCHMARK_CORRUPTIONS[11:15],
    "extra": EXTRA_CORRUPTIONS,
}

_CIFAR_ELASTIC = [(0, 0, .08), (.05, .2, .07), (.08, .06, .06), (.1, .04, .05), (.1, .03, .03)]
_IMAGENET_ELASTIC = [(2, .7, .1), (2, .08, .2), (.05, .01, .02), (.07, .01, .02), (.12, .01, .02)]

PARAMS: dict[str, dict[str, tuple]] = {
    "cifar10": {
        "gaussian_noise": (.04, .06, .08, .09, .10),
        "shot_noise": (500, 250, 100, 75, 50),
        "impulse_noise": (.01, .02, .03, .05, .07),
        "speckle_noise": (.06, .1, .12, .16, .2),
        "gaussian_blur": (.4, .6, .7, .8, 1),
        "glass_blur": ((.05, 1, 1), (.25, 1, 1), (.4, 1, 1), (.25, 1, 2), (.4, 1, 2)),
        "defocus_blur": ((.3, .4), (.4, .5), (.5, .6), (1, .2), (1.5, .1)),
        "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
        "zoom_blur": ((1.06, .01), (1.11, .01), (1.16, .01), (1.21, .01), (1.26, .01)),
        "snow": ((.1, .2, 1, .6, 8, 3, .95), (.1, .2, 1, .5, 10, 4, .9),
                 (.15, .3, 1.75, .55, 10, 4, .9), (.25, .3, 2.25, .6, 12, 6, .85),
                 (.3, .3, 1.25, .65, 14, 12, .8)),
        "frost": ((1, .2), (1, .3), (.9, .4), (.85, .4), (.75, .45)),
        "fog": ((.2, 3), (.5, 3), (.75, 2.5), (1, 2), (1.5, 1.75)),
        "brightness": (.05, .1, .15, .2, .3),
        "contrast": (.75, .5, .4, .3, .15),
        "saturate": ((.3, 0), (.1, 0), (1.5, 0), (2, .1), (2.5, .2)),
        "spatter": ((.62, .1, .7, .7, .5, 0), (.65, .1, .8, .7, .5, 0), (.65, .3, 1, .69, .5, 0),
                    (.65, .1, .7, .69, .6, 1), (.65, .1, .5, .68, .6, 1)),
        "elastic_transform": tuple(tuple(32 * v for v in t) for t in _CIFAR_ELASTIC),
        "jpeg_compression": (80, 65, 58, 50, 40),
        "pixelate": (.95, .9, .85, .75, .65),
    },
    "imagenet": {
        "gaussian_noise": (.08, .12, .18, .26, .38),
        "shot_noise": (60, 25, 12, 5, 3),
        "impulse_noise": (.03, .06, .09, .17, .27),
        "speckle_noise": (.15, .2, .35, .45, .6),
        "gaussian_blur": (1, 2, 3, 4, 6),
        "glass_blur": ((.7, 1, 2), (.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
        "defocus_blur": ((3, .1), (4, .5), (6, .5), (8, .5), (10, .5)),
        "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
        "zoom_blur": ((1.11, .01), (1.16, .01), (1.21, .02), (1.26, .02), (1.31, .03)),
        "snow": ((.1, .3, 3, .5, 10, 4, .8), (.2, .3, 2, .5, 12, 4, .7), (.55, .3, 4, .9, 12, 8, .7),
                 (.55, .3, 4.5, .85, 12, 8, .65), (.55, .3, 2.5, .85, 12, 12, .55)),
        "frost": ((1, .4), (.8, .6), (.7, .7), (.65, .7), (.6, .75)),
        "fog": ((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)),
        "brightness": (.1, .2, .3, .4, .5),
        "contrast": (.4, .3, .2, .1, .05),
        "saturate": ((.3, 0), (.1, 0), (2, 0), (5, .1), (20, .2)),
        "spatter": ((.65, .3, 4, .69, .6, 0), (.65, .3, 3, .68, .6, 0), (.65, .3, 2, .68, .5, 0),
                    (.65, .3, 1, .65, 1.5, 1), (.67, .4, 1, .65, 1.5, 1)),
        "elastic_transform": tuple(tuple(244 * v for v in t) for t in _IMAGENET_ELASTIC),
        "jpeg_compression": (25, 18, 15, 10, 7),
        "pixelate": (.6, .5, .4, .3, .25),
    },
}

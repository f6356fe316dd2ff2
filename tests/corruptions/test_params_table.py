"""PARAMS must equal shared/reference/corruptions.md value by value (tables written out here)."""
import pytest

import dataclasses

import torch

from corruptions import corruption_group
from corruptions.generate import (ALL_CORRUPTIONS, BENCHMARK_CORRUPTIONS, CATEGORIES,
                                  EXTRA_CORRUPTIONS, PARAMS, RECORDS, apply_corruption)

# Copied by hand from corruptions.md, "Parameters per severity 1..5", CIFAR-10-C column.
CIFAR10_EXPECTED = {
    "gaussian_noise": [.04, .06, .08, .09, .10],
    "shot_noise": [500, 250, 100, 75, 50],
    "impulse_noise": [.01, .02, .03, .05, .07],
    "speckle_noise": [.06, .1, .12, .16, .2],
    "gaussian_blur": [.4, .6, .7, .8, 1],
    "glass_blur": [(.05, 1, 1), (.25, 1, 1), (.4, 1, 1), (.25, 1, 2), (.4, 1, 2)],
    "defocus_blur": [(.3, .4), (.4, .5), (.5, .6), (1, .2), (1.5, .1)],
    "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],
    "zoom_blur": [(1.06, .01), (1.11, .01), (1.16, .01), (1.21, .01), (1.26, .01)],
    "snow": [(.1, .2, 1, .6, 8, 3, .95), (.1, .2, 1, .5, 10, 4, .9), (.15, .3, 1.75, .55, 10, 4, .9),
             (.25, .3, 2.25, .6, 12, 6, .85), (.3, .3, 1.25, .65, 14, 12, .8)],
    "frost": [(1, .2), (1, .3), (.9, .4), (.85, .4), (.75, .45)],
    "fog": [(.2, 3), (.5, 3), (.75, 2.5), (1, 2), (1.5, 1.75)],
    "brightness": [.05, .1, .15, .2, .3],
    "contrast": [.75, .5, .4, .3, .15],
    "saturate": [(.3, 0), (.1, 0), (1.5, 0), (2, .1), (2.5, .2)],
    "spatter": [(.62, .1, .7, .7, .5, 0), (.65, .1, .8, .7, .5, 0), (.65, .3, 1, .69, .5, 0),
                (.65, .1, .7, .69, .6, 1), (.65, .1, .5, .68, .6, 1)],
    "elastic_transform": [(32 * 0, 32 * 0, 32 * .08), (32 * .05, 32 * .2, 32 * .07),
                          (32 * .08, 32 * .06, 32 * .06), (32 * .1, 32 * .04, 32 * .05),
                          (32 * .1, 32 * .03, 32 * .03)],
    "jpeg_compression": [80, 65, 58, 50, 40],
    "pixelate": [.95, .9, .85, .75, .65],
}

IMAGENET_EXPECTED = {
    "gaussian_noise": [.08, .12, .18, .26, .38],
    "shot_noise": [60, 25, 12, 5, 3],
    "impulse_noise": [.03, .06, .09, .17, .27],
    "speckle_noise": [.15, .2, .35, .45, .6],
    "gaussian_blur": [1, 2, 3, 4, 6],
    "glass_blur": [(.7, 1, 2), (.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)],
    "defocus_blur": [(3, .1), (4, .5), (6, .5), (8, .5), (10, .5)],
    "motion_blur": [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)],
    "zoom_blur": [(1.11, .01), (1.16, .01), (1.21, .02), (1.26, .02), (1.31, .03)],
    "snow": [(.1, .3, 3, .5, 10, 4, .8), (.2, .3, 2, .5, 12, 4, .7), (.55, .3, 4, .9, 12, 8, .7),
             (.55, .3, 4.5, .85, 12, 8, .65), (.55, .3, 2.5, .85, 12, 12, .55)],
    "frost": [(1, .4), (.8, .6), (.7, .7), (.65, .7), (.6, .75)],
    "fog": [(1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)],
    "brightness": [.1, .2, .3, .4, .5],
    "contrast": [.4, .3, .2, .1, .05],
    "saturate": [(.3, 0), (.1, 0), (2, 0), (5, .1), (20, .2)],
    "spatter": [(.65, .3, 4, .69, .6, 0), (.65, .3, 3, .68, .6, 0), (.65, .3, 2, .68, .5, 0),
                (.65, .3, 1, .65, 1.5, 1), (.67, .4, 1, .65, 1.5, 1)],
    "elastic_transform": [(244 * 2, 244 * .7, 244 * .1), (244 * 2, 244 * .08, 244 * .2),
                          (244 * .05, 244 * .01, 244 * .02), (244 * .07, 244 * .01, 244 * .02),
                          (244 * .12, 244 * .01, 244 * .02)],
    "jpeg_compression": [25, 18, 15, 10, 7],
    "pixelate": [.6, .5, .4, .3, .25],
}


def _flat(v):
    return list(v) if isinstance(v, (tuple, list)) else [v]


@pytest.mark.parametrize("param_set,expected", [("cifar10", CIFAR10_EXPECTED),
                                                ("imagenet", IMAGENET_EXPECTED)])
def test_params_match_reference_table(param_set, expected):
    table = PARAMS[param_set]
    assert set(table) == set(BENCHMARK_CORRUPTIONS) | set(EXTRA_CORRUPTIONS)
    assert set(table) == set(expected)
    for name, rows in expected.items():
        got = table[name]
        assert len(got) == 5, name
        for severity, (want, have) in enumerate(zip(rows, got), start=1):
            assert _flat(have) == pytest.approx(_flat(want), rel=0, abs=1e-12), (param_set, name, severity)


def test_names_and_order():
    assert BENCHMARK_CORRUPTIONS == (
        "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
        "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform",
        "pixelate", "jpeg_compression")
    assert EXTRA_CORRUPTIONS == ("speckle_noise", "gaussian_blur", "spatter", "saturate")


def test_parameter_sets_differ_where_the_reference_says():
    # severity k of ImageNet is much harsher: ImageNet gaussian sigma .08 = CIFAR severity 3
    assert PARAMS["imagenet"]["gaussian_noise"][0] == PARAMS["cifar10"]["gaussian_noise"][2]
    assert PARAMS["imagenet"]["contrast"] != PARAMS["cifar10"]["contrast"]


# The random-stream id of every corruption, written out: each one keys all of that corruption's
# random draws, so changing one changes every image generated with it.
STREAM_IDS = {
    "gaussian_noise": 0, "shot_noise": 1, "impulse_noise": 2, "defocus_blur": 3, "glass_blur": 4,
    "motion_blur": 5, "zoom_blur": 6, "snow": 7, "frost": 8, "fog": 9, "brightness": 10,
    "contrast": 11, "elastic_transform": 12, "pixelate": 13, "jpeg_compression": 14,
    "speckle_noise": 15, "gaussian_blur": 16, "spatter": 17, "saturate": 18,
}


def test_stream_ids_are_pinned():
    assert {name: r.stream_id for name, r in RECORDS.items()} == STREAM_IDS


def test_stream_id_comes_from_the_record_not_the_list_position(monkeypatch):
    import corruptions.generate as gen

    x = torch.arange(2 * 3 * 32 * 32).remainder(251).to(torch.uint8).view(2, 3, 32, 32)
    want = apply_corruption(x, "snow", 4)
    # every corruption at another position (as if one were added in front): same output
    monkeypatch.setattr(gen, "ALL_CORRUPTIONS", tuple(reversed(ALL_CORRUPTIONS)))
    monkeypatch.setattr(gen, "RECORDS", dict(reversed(RECORDS.items())))
    assert torch.equal(apply_corruption(x, "snow", 4), want)
    # the same position with another id (frost's): other random draws
    monkeypatch.setitem(gen.RECORDS, "snow", dataclasses.replace(RECORDS["snow"], stream_id=8))
    assert not torch.equal(apply_corruption(x, "snow", 4), want)


def test_views_follow_the_records():
    assert list(RECORDS) == list(ALL_CORRUPTIONS) == list(BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS)
    assert all(r.name == name and len(r.cifar10) == len(r.imagenet) == 5 for name, r in RECORDS.items())
    assert {name: r.cifar10 for name, r in RECORDS.items()} == PARAMS["cifar10"]
    assert CATEGORIES == {
        "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
        "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
        "weather": ("snow", "frost", "fog", "brightness"),
        "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
        "extra": EXTRA_CORRUPTIONS,
    }


def test_corruption_groups():
    assert corruption_group() == corruption_group("benchmark") == BENCHMARK_CORRUPTIONS
    assert len(corruption_group("benchmark")) == 15
    assert corruption_group("extra") == EXTRA_CORRUPTIONS and len(EXTRA_CORRUPTIONS) == 4
    assert corruption_group("all") == ALL_CORRUPTIONS and len(ALL_CORRUPTIONS) == 19
    for bad in ("all19", "Benchmark", None):
        with pytest.raises(ValueError, match="unknown corruption group .*benchmark, extra, all"):
            corruption_group(bad)

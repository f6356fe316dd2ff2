"""Common corruptions (Hendrycks & Dietterich): a batched generator for all 19 x 5, readers and
writers for the CIFAR-10-C / ImageNet-C layouts, the Zenodo downloader, and the metrics (mCE ...).

A leaf: takes tensors, arrays and DataFrames; never imports robust_eval.
"""
from .datasets import (CifarC, CifarCWriter, LayoutError, list_imagenet_c, load_cifar_c,
                       load_imagenet_c, read_generation, write_cifar_c, write_cifar_c_labels,
                       write_imagenet_c)
from .download import ARCHIVES, DownloadError, download_cifar_c
from .generate import CORRUPTIONS, apply_corruption, corrupt_batch
from .metrics import (ALEXNET_ERRORS, accuracy_table, corruption_errors, mce,
                      mean_corruption_accuracy, mean_corruption_error, summary)
from .params import (ALL_CORRUPTIONS, BENCHMARK_CORRUPTIONS, CATEGORIES, EXTRA_CORRUPTIONS, GROUPS,
                     PARAMS, RECORDS, Corruption, corruption_group)

__all__ = [
    "ALEXNET_ERRORS", "ALL_CORRUPTIONS", "ARCHIVES", "BENCHMARK_CORRUPTIONS", "CATEGORIES",
    "CORRUPTIONS", "CifarC", "CifarCWriter", "Corruption", "DownloadError", "EXTRA_CORRUPTIONS",
    "GROUPS", "LayoutError", "PARAMS", "RECORDS", "accuracy_table", "apply_corruption",
    "corrupt_batch", "corruption_errors", "corruption_group", "download_cifar_c",
    "list_imagenet_c", "load_cifar_c", "load_imagenet_c", "mce", "mean_corruption_accuracy",
    "mean_corruption_error", "read_generation", "summary", "write_cifar_c",
    "write_cifar_c_labels", "write_imagenet_c",
]

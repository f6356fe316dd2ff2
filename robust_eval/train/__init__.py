"""Training recipes that make checkpoints: standard, label noise, data scarcity, free AT.

    from robust_eval.train import train_model
    result = train_model("runs/r18-bn-sym40", arch="resnet18", norm="bn", dataset="cifar10",
                         data_root="data/cifar10", recipe="label_noise", noise_type="symmetric",
                         noise_rate=0.4, seed=0, device="cuda", amp="bf16")
    result.best_checkpoint, result.last_checkpoint, result.history

docs/training.md documents the recipes, the run folder and resuming.
"""
from robust_eval.train.loop import (BEST_FILE, LAST_FILE, SPEC_FILE, STATE_FILE, TrainError,
                                    TrainResult, evaluate_accuracy, load_state, run_name,
                                    split_indices, train_model)
from robust_eval.train.noise import KINDS as NOISE_KINDS, corrupt_labels, noise_summary
from robust_eval.train.recipes import RECIPES, Recipe, TrainSpec, list_recipes, make_spec

__all__ = ["BEST_FILE", "LAST_FILE", "NOISE_KINDS", "RECIPES", "Recipe", "SPEC_FILE",
           "STATE_FILE", "TrainError", "TrainResult", "TrainSpec", "corrupt_labels",
           "evaluate_accuracy", "list_recipes", "load_state", "make_spec", "noise_summary",
           "run_name", "split_indices", "train_model"]

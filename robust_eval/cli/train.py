"""`robust-eval train`: run a training recipe into a run folder (resumes when rerun)."""
from __future__ import annotations

import argparse
import json
import sys

from robust_eval.cli import command_help


def _milestones(text: str):
    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"milestones must be comma-separated epochs, got {text!r}")


def register(subparsers) -> None:
    from robust_eval.train.noise import KINDS
    from robust_eval.train.recipes import AMP_CHOICES, RECIPES, VAL_LABEL_CHOICES

    p = subparsers.add_parser(
        "train", help=command_help("train"),
        description="Train ARCH with NORM by a recipe; writes spec.json, state.pt, "
                    "last.safetensors and best.safetensors into --out. Rerunning the same "
                    "command resumes from the last finished epoch and ends with the same weights "
                    "as an uninterrupted run.")
    p.add_argument("--arch", required=True, help="registered arch (robust_eval.models)")
    p.add_argument("--norm", default="bn", help="registered norm: bn, convnorm, sn, oni, ocnn")
    p.add_argument("--recipe", default="standard", choices=RECIPES.list())
    p.add_argument("--dataset", default="cifar10", help="cifar10, cifar100, digits")
    p.add_argument("--data-root", help="folder with train.npz or the torchvision layout")
    p.add_argument("--out", required=True, help="run folder (created; reused to resume)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, help="override the recipe's epochs (milestones scale)")
    p.add_argument("--lr", type=float)
    p.add_argument("--milestones", type=_milestones, help="e.g. 40,80")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--momentum", type=float)
    p.add_argument("--no-augment", action="store_true", help="no random crop + flip")
    p.add_argument("--noise-type", choices=KINDS, help="label noise kind (recipe label_noise)")
    p.add_argument("--noise-rate", type=float, help="fraction in [0, 1)")
    p.add_argument("--val-labels", choices=VAL_LABEL_CHOICES,
                   help="validation labels: noisy (official, default) or clean")
    p.add_argument("--data-fraction", type=float, help="fraction of images per class kept")
    p.add_argument("--val-fraction", type=float, help="held-out validation fraction per class "
                                                      "(default 0.1; 0 = none)")
    p.add_argument("--train-limit", type=int, help="use the first N training images")
    p.add_argument("--adv-replays", type=int, help="free AT replays m (recipe free_adv: 4)")
    p.add_argument("--amp", choices=AMP_CHOICES, help="mixed precision (fp16 needs CUDA)")
    p.add_argument("--channels-last", action="store_true", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    p.add_argument("--no-resume", action="store_true",
                   help="start over even if --out holds a resumable state")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from robust_eval.cli import CliError
    from robust_eval.train import TrainError, train_model

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise CliError(f"--device {args.device}: CUDA is not available on this machine")
    options = dict(epochs=args.epochs, lr=args.lr, milestones=args.milestones,
                   batch_size=args.batch_size, weight_decay=args.weight_decay,
                   momentum=args.momentum, augment=False if args.no_augment else None,
                   noise_type=args.noise_type, noise_rate=args.noise_rate,
                   val_labels=args.val_labels, data_fraction=args.data_fraction,
                   val_fraction=args.val_fraction, train_limit=args.train_limit,
                   adv_replays=args.adv_replays, amp=args.amp, channels_last=args.channels_last)

    def report(record):
        if args.quiet:
            return
        val = f" val_acc {record['val_acc']:.4f}" if "val_acc" in record else ""
        print(f"epoch {record['epoch']}/{record['epochs']} lr {record['lr']:.4g} "
              f"loss {record['train_loss']:.4f} train_acc {record['train_acc']:.4f}{val} "
              f"({record['seconds']:.1f} s)", flush=True)

    try:
        result = train_model(args.out, arch=args.arch, norm=args.norm, dataset=args.dataset,
                             data_root=args.data_root, recipe=args.recipe, seed=args.seed,
                             device=args.device, resume=not args.no_resume, progress=report,
                             **options)
    except TrainError as error:
        raise CliError(str(error)) from None
    summary = {"out": str(result.out_dir), "spec_key": result.spec.key,
               "epochs": len(result.history), "resumed_from_epoch": result.resumed_from_epoch,
               "best_val_epoch": result.best_epoch,
               "last_checkpoint": str(result.last_checkpoint),
               "best_checkpoint": str(result.best_checkpoint) if result.best_checkpoint else None,
               "noise": result.noise}
    if not args.quiet:
        json.dump(summary, sys.stdout, indent=2)
        print()
    return 0

"""`robust-eval zoo`: list RobustBench zoo models, fetch their files to where evaluate reads."""
from __future__ import annotations

import argparse

from robust_eval.cli import command_help


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "zoo", help=command_help("zoo"),
        description="RobustBench's model zoo, from the model list robustbench ships. `download "
                    "NAME` fetches NAME's file into MODEL_DIR/DATASET/THREAT/NAME.pt, where "
                    "`robust-eval evaluate --robustbench NAME` reads it; the file must load "
                    "with weights_only=True before it is put in place.")
    actions = p.add_subparsers(dest="zoo_action", metavar="ACTION", required=True)
    d = actions.add_parser("download", help="download one zoo model's file")
    d.add_argument("name", metavar="NAME", help="zoo name, e.g. Standard (case-sensitive)")
    d.add_argument("--dataset", default="cifar10", help="cifar10, cifar100 or imagenet")
    d.add_argument("--threat", default="Linf", help="Linf, L2 or corruptions (any case)")
    d.add_argument("--model-dir", default="models",
                   help="download into MODEL_DIR/DATASET/THREAT/NAME.pt (default: models, as "
                        "evaluate --model-dir)")
    d.set_defaults(func=_download)
    ls = actions.add_parser("list", help="list zoo models")
    ls.add_argument("--dataset", help="only this dataset (cifar10, cifar100, imagenet)")
    ls.add_argument("--threat", help="only this threat model (Linf, L2, corruptions)")
    ls.set_defaults(func=_list)


def _download(args: argparse.Namespace) -> int:
    from robust_eval.checkpoints import download_robustbench, file_sha256, robustbench_path

    path = robustbench_path(args.name, args.model_dir, args.dataset, args.threat)
    present = path.is_file()
    path = download_robustbench(args.name, args.model_dir, args.dataset, args.threat)
    print(f"{'already present' if present else 'downloaded'}: {path} "
          f"(sha256 {file_sha256(path)[:12]})")
    return 0


def _list(args: argparse.Namespace) -> int:
    from robust_eval.checkpoints import list_robustbench

    for dataset, threat, name, gdrive_id in list_robustbench(args.dataset, args.threat):
        note = ("" if isinstance(gdrive_id, str) else "  (timm model, no zoo file)"
                if gdrive_id is None else f"  (ensemble of {len(gdrive_id)} files)")
        print(f"{dataset}\t{threat}\t{name}{note}")
    return 0

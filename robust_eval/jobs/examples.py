"""examples.npz: a few test images as a model saw them, for the report's picture page.

The reports leaf cannot corrupt or attack images, so the job writes them: the first few images of
the first dataset under every corruption of the job at severities 1, 3 and 5, and under each
attack of the job at its largest eps, with the first model's predictions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

SEVERITIES = (1, 3, 5)


def write_examples(out_dir: Path, cells: Sequence[Any], device: str, count: int = 3
                   ) -> Optional[Path]:
    """Write out_dir/examples.npz; None when the job has no corruption or attack cell."""
    from reports.schema import write_atomic
    from robust_eval.jobs.cells import WorkerCache

    wanted = [c for c in cells if c.benchmark in ("corruption", "attack")]
    if not wanted:
        return None
    first = wanted[0]
    chosen = [c for c in wanted if c.model == first.model and c.dataset == first.dataset]
    cache = WorkerCache()
    data = cache.data(first.dataset_spec, limit=count)
    model = cache.model(first.model_spec, device)
    images, labels = data.images[:count], data.labels[:count]
    arrays: Dict[str, Any] = {"images": images.numpy(), "labels": labels.numpy(),
                              "classes": np.array(data.classes), "model": first.model,
                              "clean_pred": _predict(model, images, device)}
    arrays.update(_corrupted(chosen, images, model, device))
    arrays.update(_adversarial(chosen, images, labels, model, device))
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return write_atomic(out_dir / "examples.npz", buffer.getvalue())


@torch.inference_mode()
def _predict(model, images: torch.Tensor, device: str) -> np.ndarray:
    x = images.to(device).float() / 255 if images.dtype == torch.uint8 else images.to(device)
    return model(x).argmax(1).cpu().numpy()


def _corrupted(cells, images, model, device) -> Dict[str, Any]:
    from corruptions.generate import apply_corruption

    generated = [c for c in cells if c.benchmark == "corruption"
                 and c.params.get("source") == "generated"]
    names = list(dict.fromkeys(c.params["corruption"] for c in generated))
    if not names:
        return {}
    param_set = generated[0].params["param_set"]
    seed = generated[0].seed
    indices = torch.arange(len(images))
    stack = np.stack([np.stack([apply_corruption(images, name, s, params=param_set, seed=seed,
                                                 indices=indices).numpy()
                                for s in SEVERITIES]) for name in names])
    predictions = np.stack([np.stack([_predict(model, torch.from_numpy(stack[i, j]), device)
                                      for j in range(len(SEVERITIES))])
                            for i in range(len(names))])
    return {"corruptions": np.array(names), "severities": np.array(SEVERITIES),
            "param_set": param_set, "corrupted": stack, "corrupted_pred": predictions}


def _adversarial(cells, images, labels, model, device) -> Dict[str, Any]:
    import attacks

    largest: Dict[str, Any] = {}
    for cell in cells:
        if cell.benchmark == "attack" and attacks.describe(cell.params["attack"])["uses_gradients"]:
            name = cell.params["attack"]
            if name not in largest or cell.params["eps"] > largest[name].params["eps"]:
                largest[name] = cell
    if not largest:
        return {}
    x = images.to(device).float() / 255
    names: List[str] = []
    adversarial, eps_values = [], []
    for name, cell in largest.items():
        options = {k: v for k, v in cell.params.items() if k not in ("attack", "eps")}
        attack = attacks.ATTACKS[name](model, eps=cell.params["eps"], seed=cell.seed, **options)
        adversarial.append(attack(x, labels.to(device)).detach().cpu())
        names.append(name)
        eps_values.append(cell.params["eps"])
    stack = torch.stack(adversarial)
    predictions = np.stack([_predict(model, adv, device) for adv in stack])
    return {"attacks": np.array(names), "attack_eps": np.array(eps_values),
            "adversarial": stack.numpy().astype(np.float32), "adversarial_pred": predictions}

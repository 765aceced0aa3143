"""Prune the public ResNet-20 checkpoint, then fine-tune it with the study's recipe.

Loads ``resnet20-12fca82f.th`` through ``load_weights``, removes 50 % of the conv weights by global
L1 magnitude (``torch.nn.utils.prune``), evaluates, fine-tunes with ``fit`` and the ``FINETUNE``
preset (shortened with ``--epochs``), and checks that the pruned weights stayed zero.  It writes
the per-epoch history as CSV.  Quick by default (a 2000-image slice, one epoch) so it runs on a
laptop CPU; ``--train-images 10000 --epochs 40`` is the full recipe on the shared train subset.

Run from the repository root::

    python examples/finetune_example.py --shared ../shared --out finetune_history.csv
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch.nn.utils import prune

from prunesafe.models import FINETUNE, cifar_resnet, evaluate, fit, load_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--amount", type=float, default=0.5, help="fraction of conv weights to prune")
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--out", type=Path, default=Path("finetune_history.csv"))
    args = parser.parse_args()

    data = args.shared / "data" / "cifar10"
    x_train = np.load(data / "train_images.npy")[: args.train_images]
    y_train = np.load(data / "train_labels.npy")[: args.train_images]
    x_test = np.load(data / "test_images.npy")[: args.test_images]
    y_test = np.load(data / "test_labels.npy")[: args.test_images]
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")

    model = load_weights(cifar_resnet(20), args.shared / "models" / "resnet20-12fca82f.th").to(device)
    print(f"dense : acc {evaluate(model, (x_test, y_test))['acc']:.4f}")

    convs = [(m, "weight") for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    prune.global_unstructured(convs, pruning_method=prune.L1Unstructured, amount=args.amount)
    print(f"pruned: acc {evaluate(model, (x_test, y_test))['acc']:.4f} ({args.amount:.0%} of conv weights)")

    recipe = dataclasses.replace(FINETUNE, epochs=args.epochs)
    history = fit(model, (x_train, y_train), recipe=recipe, val_data=(x_test, y_test), seed=0)
    for row in history:
        print(
            f"epoch {row['epoch']:>3.0f}  lr {row['lr']:.0e}  train loss {row['train_loss']:.4f}  "
            f"train acc {row['train_acc']:.4f}  val acc {row['val_acc']:.4f}  ({row['time_s']:.1f} s)"
        )
    still_zero = all(not m.weight[m.weight_mask == 0].any() for m, _ in convs)
    print(f"pruned weights still zero after fine-tuning: {still_zero}")
    history.to_csv(args.out)
    print(f"history -> {args.out}")


if __name__ == "__main__":
    main()

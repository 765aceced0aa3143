"""Prune a CIFAR ResNet-20 three ways at ratio 0.5 and print the reports.

Usage::

    python examples/prune_example.py                       # randomly initialised ResNet-20
    python examples/prune_example.py ../shared/models/resnet20-12fca82f.th   # a trained checkpoint

With a checkpoint, the script also reports CIFAR-10 test accuracy on 1000 images when
``--cifar10 DIR`` points at the ``{test_images,test_labels}.npy`` folder.  Runs in well
under 30 s on a CPU.  Writes ``pruned-<method>.pt`` files next to ``--out`` when given.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from prunesafe.models import cifar_resnet, load_weights
from prunesafe.pruning import finalize, load_pruned, prune_model, pruning_report, save_pruned


def accuracy(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        predictions = torch.cat([model(batch).argmax(1) for batch in x.split(250)])
    return float((predictions.numpy() == labels).mean())


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("checkpoint", nargs="?", help="CIFAR ResNet-20 checkpoint (optional)")
    parser.add_argument("--cifar10", help="folder with test_images.npy / test_labels.npy (optional)")
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--out", help="folder to save the pruned models in (optional)")
    args = parser.parse_args()

    model = cifar_resnet(20)
    if args.checkpoint:
        load_weights(model, args.checkpoint)
    model.eval()
    example = torch.rand(1, 3, 32, 32)
    data = None
    if args.cifar10:
        folder = Path(args.cifar10)
        data = (np.load(folder / "test_images.npy")[:1000], np.load(folder / "test_labels.npy")[:1000])
        print(f"original accuracy on 1000 test images: {accuracy(model, *data):.3f}")

    for method in ("unstructured", "filter", "channel"):
        start = time.perf_counter()
        pruned = prune_model(model, method, args.ratio, example_inputs=example).eval()
        elapsed = time.perf_counter() - start
        print(f"\n=== {method} pruning at ratio {args.ratio} ({elapsed:.2f} s) ===")
        print(pruning_report(model, pruned, example))
        if data is not None:
            print(f"accuracy without fine-tuning: {accuracy(pruned, *data):.3f}")
        if args.out:
            path = Path(args.out) / f"pruned-{method}.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_pruned(pruned, path)
            x = torch.rand(4, 3, 32, 32)
            assert torch.equal(load_pruned(path).eval()(x), pruned(x))
            print(f"saved to {path} (reloads with identical outputs)")
        if method == "unstructured":
            finalize(pruned)  # fold the masks in once fine-tuning is over


if __name__ == "__main__":
    main()

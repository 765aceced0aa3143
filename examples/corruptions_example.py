"""Generate CIFAR-10-C corruptions natively, evaluate a model on the fly, and write a CIFAR-10-C folder.

Run from the repository root (uses ../shared/data and ../shared/models)::

    python examples/corruptions_example.py [--n 200] [--out /tmp/my-cifar-10-c]

1. corrupt a batch with every corruption at severity 3 and save a preview grid (PNG);
2. evaluate ResNet-20 on the 15 benchmark corruptions generated on the fly (no files);
3. write a CIFAR-10-C-layout folder for two corruptions and read it back with CIFAR10C.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from prunesafe.corruptions import ALL_CORRUPTIONS, OnTheFlyCIFARC, corrupt, write_cifar_c
from prunesafe.data import CIFAR10C
from prunesafe.models import cifar_resnet, load_weights

SHARED = Path(os.environ.get("PRUNESAFE_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def accuracy(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    with torch.inference_mode():
        x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float() / 255
        return float((model(x).argmax(1).numpy() == labels).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200, help="test images to use")
    p.add_argument("--out", type=Path, default=None, help="folder to write (default: a temporary one)")
    args = p.parse_args()
    frost_dir = SHARED / "data" / "frost"
    images = np.load(SHARED / "data" / "cifar10" / "test_images.npy", mmap_mode="r")[: args.n]
    labels = np.load(SHARED / "data" / "cifar10" / "test_labels.npy")[: args.n]

    # 1. one image under every corruption (severity 3), as a preview grid
    row = [np.asarray(images[0])]
    row += [corrupt(images[:1], c, 3, seed=0, frost_dir=frost_dir)[0] for c in ALL_CORRUPTIONS]
    grid = np.concatenate(row, axis=1)
    try:
        from PIL import Image

        preview = Path(tempfile.gettempdir()) / "corruptions_preview.png"
        Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(preview)
        print(f"preview of clean + {len(ALL_CORRUPTIONS)} corruptions (severity 3): {preview}")
    except ImportError:  # pragma: no cover - Pillow comes with torchvision
        pass

    # 2. on-the-fly evaluation: cells are generated when read, one at a time
    model = cifar_resnet(20)
    load_weights(model, SHARED / "models" / "resnet20-jpeg.th")
    model.eval()
    ds = OnTheFlyCIFARC(images, labels, "benchmark", seed=0, frost_dir=frost_dir)
    print(f"clean accuracy: {accuracy(model, images, labels):.3f}")
    per_corruption: dict[str, list[float]] = {}
    for cell in ds.cells:
        per_corruption.setdefault(cell.corruption, []).append(accuracy(model, cell.images, cell.labels))
    for name, accs in per_corruption.items():
        print(f"  {name:18s} " + " ".join(f"{a:.3f}" for a in accs))

    # 3. a CIFAR-10-C folder, read back by the ordinary loader
    out = args.out or Path(tempfile.mkdtemp(prefix="cifar-10-c-"))
    write_cifar_c(out, images, labels, ["fog", "jpeg_compression"], seed=0)
    c = CIFAR10C(out, "fog", 5)
    fog5 = next(cell for cell in ds.cells if (cell.corruption, cell.severity) == ("fog", 5))
    same = np.array_equal(c.images, fog5.images)
    print(f"wrote {out}: {sorted(f.name for f in out.iterdir())}")
    print(f"fog severity 5 read back equals the on-the-fly cell: {same}")


if __name__ == "__main__":
    main()

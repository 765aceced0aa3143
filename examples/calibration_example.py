"""Calibration report for a CIFAR-10 ResNet-20 (or synthetic logits): ECE & co, CI, temperature scaling.

Usage::

    python examples/calibration_example.py                          # synthetic logits, a few seconds
    python examples/calibration_example.py --shared ../shared --n 2000  # ResNet-20 on CIFAR-10 test images
    python examples/calibration_example.py --out reliability.png    # where to save the diagram

With ``--shared`` it loads ``models/resnet20-12fca82f.th`` and the first ``--n`` images of
``data/cifar10/test_images.npy``; the first half is used to fit the temperature, the second half to
evaluate (never fit on the data you report on).  The reliability diagram PNG is written when
matplotlib is installed (``pip install "prunesafe[plot]"``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from prunesafe.metrics import (
    CalibrationAccumulator,
    bootstrap_ci,
    expected_calibration_error,
    fit_temperature,
    reliability_diagram,
)


def resnet20_logits(shared: Path, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from prunesafe.models import cifar_resnet, load_weights

    images = np.load(shared / "data" / "cifar10" / "test_images.npy", mmap_mode="r")[:n]
    labels = torch.from_numpy(np.load(shared / "data" / "cifar10" / "test_labels.npy")[:n])
    model = load_weights(cifar_resnet(20), shared / "models" / "resnet20-12fca82f.th").eval()
    x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float().div_(255)
    with torch.no_grad():
        logits = torch.cat([model(x[i : i + 500]) for i in range(0, n, 500)])
    return logits, labels


def synthetic_logits(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An over-confident classifier: labels drawn from softmax(z), logits reported as 2.5 * z."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, 10, generator=g) * 2
    labels = torch.multinomial(torch.softmax(z, 1), 1, generator=g).squeeze(1)
    return z * 2.5, labels


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--shared", type=Path, default=None, help="path to the shared/ data folder")
    parser.add_argument("--n", type=int, default=2000, help="number of test images / synthetic samples")
    parser.add_argument("--out", type=Path, default=Path("reliability.png"))
    args = parser.parse_args()

    if args.shared is not None and (args.shared / "models" / "resnet20-12fca82f.th").exists():
        logits, labels = resnet20_logits(args.shared, args.n)
        source = f"ResNet-20 on {args.n} CIFAR-10 test images"
    else:
        logits, labels = synthetic_logits(max(args.n, 10_000))
        source = f"synthetic over-confident logits (n={logits.shape[0]})"
    print(f"source: {source}")

    half = logits.shape[0] // 2
    fit_l, fit_y, ev_l, ev_y = logits[:half], labels[:half], logits[half:], labels[half:]

    t = fit_temperature(fit_l, fit_y)
    for name, scores in (("raw", ev_l), (f"T={t:.3f}", ev_l / t)):
        acc = CalibrationAccumulator(n_bins=15)
        acc.update(scores, ev_y)
        r = acc.compute()
        ci = bootstrap_ci(expected_calibration_error, scores, ev_y, n_resamples=100, seed=0)
        print(
            f"{name:>9}: acc {r.accuracy:.4f}  ECE {r.ece:.4f} [{ci.low:.4f}, {ci.high:.4f}]  "
            f"MCE {r.mce:.4f}  cwECE {r.classwise_ece:.4f}  Brier {r.brier:.4f}  NLL {r.nll:.4f}  "
            f"debiased-L2 {r.debiased_l2:.4f}"
        )
    adaptive = expected_calibration_error(ev_l, ev_y, binning="quantile")
    print(f"equal-mass (adaptive) ECE, raw: {adaptive:.4f}")

    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        print('matplotlib not installed: skipping the PNG (pip install "prunesafe[plot]")')
        return
    from prunesafe.plotting import plot_reliability_diagram

    fig = plot_reliability_diagram(reliability_diagram(ev_l, ev_y, n_bins=15), title=f"{source}, raw")
    fig.savefig(args.out, dpi=120, bbox_inches="tight")
    print(f"reliability diagram written to {args.out}")


if __name__ == "__main__":
    main()

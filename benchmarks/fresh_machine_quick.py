"""The README's main command on a simulated fresh machine: ``prunesafe study --preset quick --data-dir DIR --download``.

This machine has no internet, so the published files are served from 127.0.0.1 and the mirror variables point at
them -- the path a site without direct access uses:

* ``cifar-10-python.tar.gz`` in torchvision's format, built from ``../shared/data/cifar10`` (the JPEG-decoded copy:
  its 10,000 test images and 10,000 training images).  Its bytes differ from the official archive, so torchvision's
  MD5s are patched to it in this process (what ``PRUNESAFE_CIFAR10_URL`` serves must be byte-identical to the
  official archive in real use);
* ``resnet20-12fca82f.th`` from ``../shared/models`` (the published file: its SHA-256 is the registry's);
* the frost textures from ``../shared/data/frost`` (their SHA-256 are ``FROST_SHA256``).

Then it runs the CLI in-process with ``--download`` into a fresh temporary ``DIR`` and prints the wall time,
what was downloaded, and the report's first table.  Usage: ``python benchmarks/fresh_machine_quick.py [--out DIR]``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import io
import pickle
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torchvision

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def build_archive(folder: Path) -> bytes:
    """cifar-10-python.tar.gz from the shared arrays; patch torchvision's MD5s to it (this process only)."""
    blobs: dict[str, bytes] = {}
    for split in ("train", "test"):
        images = np.load(SHARED / "data" / "cifar10" / f"{split}_images.npy")
        labels = np.load(SHARED / "data" / "cifar10" / f"{split}_labels.npy").astype(int).tolist()
        flat = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), -1)
        if split == "test":
            blobs["test_batch"] = pickle.dumps({"data": flat, "labels": labels}, protocol=2)
        else:
            for i, chunk in enumerate(np.array_split(np.arange(len(images)), 5), start=1):
                blobs[f"data_batch_{i}"] = pickle.dumps(
                    {"data": flat[chunk], "labels": [labels[j] for j in chunk]}, protocol=2
                )
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    blobs["batches.meta"] = pickle.dumps({"label_names": names}, protocol=2)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, blob in blobs.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    archive = buf.getvalue()
    (folder / "cifar-10-python.tar.gz").write_bytes(archive)
    cls = torchvision.datasets.CIFAR10
    cls.train_list = [[f"data_batch_{i}", _md5(blobs[f"data_batch_{i}"])] for i in range(1, 6)]
    cls.test_list = [["test_batch", _md5(blobs["test_batch"])]]
    cls.tgz_md5 = _md5(archive)
    cls.meta = {**cls.meta, "md5": _md5(blobs["batches.meta"])}
    return archive


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="fresh-machine-"))
    serve = work / "server"
    serve.mkdir(parents=True)
    build_archive(serve)
    (serve / "resnet20-12fca82f.th").write_bytes((SHARED / "models" / "resnet20-12fca82f.th").read_bytes())
    for f in (SHARED / "data" / "frost").glob("frost*"):
        (serve / f.name).write_bytes(f.read_bytes())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(serve))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    os.environ["PRUNESAFE_CIFAR10_URL"] = f"{base}/cifar-10-python.tar.gz"
    os.environ["PRUNESAFE_CHECKPOINT_URL"] = base
    os.environ["PRUNESAFE_FROST_URL"] = base
    data_dir, out = work / "DIR", work / "results"
    from prunesafe.cli import main as cli

    start = time.perf_counter()
    code = cli(["study", "--preset", "quick", "--data-dir", str(data_dir), "--download", "--out", str(out)])
    wall = time.perf_counter() - start
    httpd.shutdown()
    print(f"exit code {code}; wall time {wall:.0f} s (download + study)")
    for p in sorted(data_dir.rglob("*")):
        if p.is_file():
            print(f"  {p.relative_to(data_dir)}  {p.stat().st_size} B")
    print(f"outputs in {out}")


if __name__ == "__main__":
    main()

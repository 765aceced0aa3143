"""Datasets: clean CIFAR, CIFAR-10-C / CIFAR-100-C (memory-mapped), in-memory arrays, downloads."""

from prunesafe.data.arrays import ArrayDataset, iter_batches, load_cifar10_arrays
from prunesafe.data.cifar import cifar_arrays, load_cifar10, load_cifar100
from prunesafe.data.cifar_c import (
    ALL_CORRUPTIONS,
    BENCHMARK_CORRUPTIONS,
    CIFAR10C,
    CIFAR100C,
    CORRUPTION_GROUPS,
    EXTRA_CORRUPTIONS,
    SEVERITIES,
    CorruptedCIFAR,
    CorruptionCell,
    resolve_corruptions,
    resolve_severities,
)
from prunesafe.data.download import ARCHIVES, BASE_URL_ENV, DownloadError, archive_url, download_cifar_c
from prunesafe.data.integrity import ChecksumError, file_md5, read_md5sums, verify_md5, write_md5sums

__all__ = [
    "ALL_CORRUPTIONS",
    "ARCHIVES",
    "BASE_URL_ENV",
    "BENCHMARK_CORRUPTIONS",
    "CIFAR10C",
    "CIFAR100C",
    "CORRUPTION_GROUPS",
    "EXTRA_CORRUPTIONS",
    "SEVERITIES",
    "ArrayDataset",
    "ChecksumError",
    "CorruptedCIFAR",
    "CorruptionCell",
    "DownloadError",
    "archive_url",
    "cifar_arrays",
    "download_cifar_c",
    "file_md5",
    "iter_batches",
    "load_cifar10",
    "load_cifar10_arrays",
    "load_cifar100",
    "read_md5sums",
    "resolve_corruptions",
    "resolve_severities",
    "verify_md5",
    "write_md5sums",
]

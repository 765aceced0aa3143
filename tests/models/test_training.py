"""fit / evaluate / TrainConfig / random_crop_flip.  Kept tiny: ResNet-8, <= 256 images, 1-2 epochs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune
from torch.utils.data import DataLoader, TensorDataset

from prunesafe.models import (
    BASELINE,
    FINETUNE,
    RECIPES,
    CifarVGG,
    History,
    TrainConfig,
    cifar_bottleneck_resnet,
    cifar_preact_resnet,
    cifar_resnet,
    evaluate,
    fit,
    random_crop_flip,
)

QUICK = dataclasses.replace(FINETUNE, epochs=1, batch_size=32)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 128)
    images = rng.integers(0, 256, (128, 16, 16, 3), dtype=np.uint8)  # 16x16 keeps the tests fast
    images[..., 0] = np.clip(images[..., 0] // 2 + labels[:, None, None] * 12, 0, 255)  # learnable signal
    return images, labels


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return cifar_resnet(8)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_recipes_are_frozen_presets() -> None:
    assert RECIPES["finetune"] is FINETUNE
    assert RECIPES["baseline"] is BASELINE
    assert (FINETUNE.epochs, FINETUNE.batch_size, FINETUNE.lr, FINETUNE.momentum, FINETUNE.weight_decay) == (
        40,
        64,
        1e-3,
        0.9,
        1e-4,
    )
    assert FINETUNE.milestones == ()
    assert (BASELINE.epochs, BASELINE.batch_size, BASELINE.lr, BASELINE.milestones) == (
        160,
        128,
        0.1,
        (80, 120),
    )
    assert BASELINE.augment
    assert BASELINE.crop_padding == 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        FINETUNE.lr = 0.1  # type: ignore[misc]
    assert dataclasses.replace(BASELINE, epochs=10).lr == 0.1
    assert [round(BASELINE.lr_at(e), 6) for e in (0, 79, 80, 119, 120, 159)] == [
        0.1,
        0.1,
        0.01,
        0.01,
        0.001,
        0.001,
    ]
    with pytest.raises(TypeError):
        RECIPES["x"] = FINETUNE  # type: ignore[index]


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("epochs", 0, "epochs"),
        ("batch_size", 2.5, "batch_size"),
        ("lr", -1.0, "lr"),
        ("lr", float("nan"), "lr"),
        ("momentum", 1.0, "momentum"),
        ("weight_decay", -1e-4, "weight_decay"),
        ("milestones", (120, 80), "milestones"),
        ("milestones", (0,), "milestones"),
        ("gamma", 0.0, "gamma"),
        ("crop_padding", -1, "crop_padding"),
        ("label_smoothing", 1.0, "label_smoothing"),
    ],
)
def test_train_config_validation(field: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(FINETUNE, **{field: value})


def test_nesterov_needs_momentum() -> None:
    with pytest.raises(ValueError, match="nesterov"):
        TrainConfig(epochs=1, batch_size=8, lr=0.1, momentum=0.0, nesterov=True)


def test_fit_history_and_learning(data: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = data
    model = _model()
    model.eval()
    cfg = dataclasses.replace(QUICK, epochs=2, lr=0.05, augment=False)
    history = fit(model, (images, labels), recipe=cfg, val_data=(images, labels), progress=False)
    assert isinstance(history, History)
    assert len(history) == 2
    assert [row["epoch"] for row in history] == [1, 2]
    assert set(history[0]) == {"epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "time_s"}
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert 0.0 <= history[1]["val_acc"] <= 1.0
    assert not model.training  # training flag restored
    frame = history.to_pandas()
    assert list(frame["epoch"]) == [1, 2]
    # val numbers agree with a separate evaluate call
    result = evaluate(model, (images, labels))
    assert result["n"] == 128
    assert result["acc"] == pytest.approx(history[-1]["val_acc"])
    assert result["loss"] == pytest.approx(history[-1]["val_loss"], rel=1e-5)


def test_history_to_csv_reads_back(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    history = History([{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 0.25, "val_acc": 0.9}])
    history.to_csv(tmp_path / "h.csv")
    frame = pd.read_csv(tmp_path / "h.csv")
    assert list(frame.columns) == ["epoch", "train_loss", "val_acc"]
    assert frame["train_loss"].tolist() == [0.5, 0.25]
    assert history.column("epoch") == [1, 2]


def test_fit_is_seeded(data: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = data
    runs = []
    for seed in (3, 3, 4):
        model = _model()
        fit(model, (images, labels), recipe=QUICK, seed=seed, progress=False)
        runs.append(_state(model))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_fit_restores_global_rng(data: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = data
    model = _model()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit(model, (images[:32], labels[:32]), recipe=QUICK, progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_fit_keeps_unstructured_pruning_masks(data: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = np.concatenate([data[0], data[0][:, ::-1]]), np.concatenate([data[1], data[1]])  # 256
    model = _model()
    targets = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=0.5)
    masks = {id(m): m.weight_mask.clone() for m, _ in targets}
    before = {id(m): m.weight.detach().clone() for m, _ in targets}
    assert sum(int((mask == 0).sum()) for mask in masks.values()) > 0
    fit(model, (images, labels), recipe=dataclasses.replace(QUICK, lr=0.05, batch_size=64), progress=False)
    changed = 0
    for module, _ in targets:
        mask = masks[id(module)]
        assert torch.equal(module.weight_mask, mask)  # masks untouched
        assert not module.weight[mask == 0].any()  # pruned weights still exactly zero
        changed += int((module.weight[mask == 1] != before[id(module)][mask == 1]).sum())
        assert hasattr(module, "weight_orig")  # reparametrisation still in place
    assert changed > 0.9 * sum(int(mask.sum()) for mask in masks.values())


def test_regularizer_and_params_hook(data: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = data

    def bn_gammas(model: nn.Module) -> list[torch.Tensor]:
        return [m.weight for m in model.modules() if isinstance(m, nn.BatchNorm2d)]

    def l1_gamma(model: nn.Module) -> torch.Tensor:
        return 1e-1 * sum(g.abs().sum() for g in bn_gammas(model))  # type: ignore[return-value]

    calls: list[bool] = []

    def slimming_hook(model: nn.Module) -> None:
        grads = [g.grad for g in bn_gammas(model)]
        calls.append(all(g is not None for g in grads))  # called after backward ...
        for gamma in bn_gammas(model):
            assert gamma.grad is not None
            gamma.grad.add_(1e-1 * torch.sign(gamma.detach()))

    cfg = dataclasses.replace(QUICK, lr=0.05, weight_decay=0.0, augment=False)
    plain, reg, hooked = _model(), _model(), _model()
    fit(plain, (images, labels), recipe=cfg, progress=False)
    history = fit(reg, (images, labels), recipe=cfg, progress=False, regularizer=l1_gamma)
    fit(hooked, (images, labels), recipe=cfg, progress=False, params_hook=slimming_hook)
    assert calls == [True] * 4  # once per step (128 / 32)
    l1 = [sum(float(g.detach().abs().sum()) for g in bn_gammas(m)) for m in (plain, reg, hooked)]
    assert l1[1] < l1[0]
    assert l1[2] < l1[0]
    # The L1 regulariser and the sub-gradient hook are the same update: equal results.
    assert l1[1] == pytest.approx(l1[2], rel=1e-4)
    assert history[0]["train_reg"] > 0


def test_regularizer_must_return_scalar_tensor(data: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = data
    with pytest.raises(TypeError, match="scalar"):
        fit(_model(), (images[:32], labels[:32]), recipe=QUICK, progress=False, regularizer=lambda m: 1.0)  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match="callable"):
        fit(_model(), (images[:32], labels[:32]), recipe=QUICK, progress=False, params_hook=3)  # type: ignore[arg-type]


def test_nan_loss_raises(data: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = data
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        fit(
            _model(),
            (images[:32], labels[:32]),
            recipe=QUICK,
            progress=False,
            regularizer=lambda m: torch.tensor(float("nan")),
        )


def test_fit_accepts_dataset_dataloader_and_float_tensors(data: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = data
    x = torch.from_numpy(images[:64]).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(labels[:64])
    cfg = dataclasses.replace(QUICK, augment=False)
    reference = _model()
    fit(reference, (images[:64], labels[:64]), recipe=QUICK, progress=False, seed=1)
    from_tensors = _model()
    fit(from_tensors, (x, y), recipe=QUICK, progress=False, seed=1)
    # uint8 NHWC and float NCHW give the same training, augmentation included
    for k, v in reference.state_dict().items():
        assert torch.allclose(v.float(), from_tensors.state_dict()[k].float(), atol=1e-5)
    from_dataset = _model()
    history = fit(from_dataset, TensorDataset(x, y), recipe=cfg, progress=False)
    assert len(history) == 1
    assert history[0]["train_acc"] >= 0
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    history = fit(_model(), loader, recipe=cfg, progress=False, val_data=TensorDataset(x, y))
    assert "val_acc" in history[0]


def test_dataset_and_dataloader_are_not_augmented_twice(
    data: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    images, labels = data
    x = torch.from_numpy(images[:64]).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(labels[:64])
    assert QUICK.augment

    def loader() -> DataLoader[tuple[torch.Tensor, ...]]:
        return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)

    # a DataLoader brings its own transforms: the recipe's augmentation is not applied on top,
    # so training with an augmenting recipe equals training with augmentation off
    plain = _model()
    fit(plain, loader(), recipe=dataclasses.replace(QUICK, augment=False), progress=False, seed=3)
    default = _model()
    fit(default, loader(), recipe=QUICK, progress=False, seed=3)
    assert all(torch.equal(v, default.state_dict()[k]) for k, v in plain.state_dict().items())

    import prunesafe.models.training as training

    calls: list[int] = []
    original = training.random_crop_flip

    def spy(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(training, "random_crop_flip", spy)

    def n_calls(train_data: object, **kwargs: object) -> int:
        calls.clear()
        fit(_model(), train_data, recipe=QUICK, progress=False, **kwargs)  # type: ignore[arg-type]
        return len(calls)

    assert n_calls((images[:64], labels[:64])) == 2  # arrays: the recipe augments (64 / 32 batches)
    assert n_calls((x, y)) == 2
    assert n_calls(TensorDataset(x, y)) == 0
    assert n_calls(loader()) == 0
    assert n_calls(loader(), augment=True) == 4  # forced: 64 / 16 batches
    assert n_calls((images[:64], labels[:64]), augment=False) == 0
    with pytest.raises(TypeError, match="augment must be True, False or None"):
        fit(_model(), (images[:64], labels[:64]), recipe=QUICK, progress=False, augment="yes")  # type: ignore[arg-type]


def test_epochs_override_rescales_milestones(data: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = data
    cfg = dataclasses.replace(BASELINE, batch_size=64, augment=False, lr=0.01)
    history = fit(_model(), (images[:64], labels[:64]), recipe=cfg, epochs=4, progress=False)
    assert [round(row["lr"], 8) for row in history] == [0.01, 0.01, 0.001, 0.0001]


def test_fit_moves_model_to_device(data: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = data
    model = _model()
    fit(model, (images[:32], labels[:32]), recipe=QUICK, device="cpu", progress=False)
    assert next(model.parameters()).device.type == "cpu"
    if torch.cuda.is_available():
        fit(model, (images[:32], labels[:32]), recipe=QUICK, device="cuda", progress=False)
        assert next(model.parameters()).is_cuda
        assert evaluate(model, (images[:32], labels[:32]))["n"] == 32


def test_fit_with_progress_bar(
    data: tuple[np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    images, labels = data
    fit(_model(), (images[:32], labels[:32]), recipe=QUICK, progress=True)
    assert "fit" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("train_data", "error", "match"),
    [
        ("images.npy", TypeError, "train_data must be an"),
        ((np.zeros((4, 32, 32, 3), np.uint8),), ValueError, r"\(images, labels\)"),
        ((np.zeros((4, 32, 32, 3), np.uint8), np.zeros(5, np.int64)), ValueError, "4 images but 5 labels"),
        ((np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int64)), ValueError, "empty"),
        ((np.zeros((4, 32, 32), np.uint8), np.zeros(4, np.int64)), ValueError, "4-D"),
        ((np.zeros((4, 3, 4, 3), np.uint8), np.zeros(4, np.int64)), ValueError, "ambiguous layout"),
        ((np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4, np.float32)), TypeError, "integer class indices"),
        ((np.zeros((4, 32, 32, 3), np.uint8), np.zeros((4, 1), np.int64)), ValueError, "1-D"),
        ((np.full((4, 32, 32, 3), -1, np.int64), np.zeros(4, np.int64)), TypeError, "uint8"),
        ((np.full((4, 32, 32, 3), 200.0, np.float32), np.zeros(4, np.int64)), ValueError, "divide by 255"),
        (
            (np.full((4, 3, 32, 32), -0.5, np.float32), np.zeros(4, np.int64)),
            ValueError,
            "normalised already",
        ),
        ((np.zeros((4, 32, 32, 3), np.uint8), np.full(4, -1)), ValueError, ">= 0"),
        ((np.zeros((4, 32, 32, 3), np.uint8), np.full(4, 10)), ValueError, "num_classes"),
        (([1, 2], [0, 1]), TypeError, "numpy array or torch tensor"),
    ],
)
def test_fit_bad_data(train_data: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        fit(_model(), train_data, recipe=QUICK, progress=False)


def test_normalised_input_allowed_without_normalize_module() -> None:
    model = cifar_resnet(8, mean=None, std=None)
    x = torch.randn(8, 3, 32, 32)  # already normalised: fine when the model does not normalise
    history = fit(model, (x, torch.zeros(8, dtype=torch.long)), recipe=QUICK, progress=False)
    assert len(history) == 1


def test_fit_bad_arguments(data: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = data
    small = (images[:8], labels[:8])
    with pytest.raises(ValueError, match="recipe must be one of"):
        fit(_model(), small, recipe="scratch", progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="epochs"):
        fit(_model(), small, epochs=0, progress=False)
    with pytest.raises(TypeError, match="seed"):
        fit(_model(), small, recipe=QUICK, seed=1.5, progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="device"):
        fit(_model(), small, recipe=QUICK, device="gpu0", progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            evaluate(_model(), small, device="cuda")
    with pytest.raises(TypeError, match="model must be"):
        fit("resnet20", small, recipe=QUICK, progress=False)  # type: ignore[arg-type]
    frozen = _model().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        fit(frozen, small, recipe=QUICK, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(_model(), small, batch_size=0)


def test_random_crop_flip_is_a_shifted_crop_or_its_mirror() -> None:
    n, pad = 16, 4
    x = torch.arange(n * 3 * 32 * 32, dtype=torch.float32).view(n, 3, 32, 32) + 1
    out = random_crop_flip(x, pad, generator=torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (pad,) * 4)
    seen_offsets, flips = set(), 0
    for i in range(n):
        matches = [
            (dy, dx, flip)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            for flip in (False, True)
            if torch.equal(
                out[i],
                padded[i, :, dy : dy + 32, dx : dx + 32].flip(2)
                if flip
                else padded[i, :, dy : dy + 32, dx : dx + 32],
            )
        ]
        assert len(matches) == 1
        seen_offsets.add(matches[0][:2])
        flips += matches[0][2]
    assert len(seen_offsets) > 8
    assert 0 < flips < n
    again = random_crop_flip(x, pad, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_random_crop_flip_without_padding_only_flips() -> None:
    x = torch.rand(64, 3, 8, 8)
    out = random_crop_flip(x, 0, generator=torch.Generator().manual_seed(1))
    same = [torch.equal(out[i], x[i]) for i in range(64)]
    mirrored = [torch.equal(out[i], x[i].flip(2)) for i in range(64)]
    assert all(a or b for a, b in zip(same, mirrored))
    assert 10 < sum(mirrored) < 54
    with pytest.raises(ValueError, match="padding"):
        random_crop_flip(x, -1)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        random_crop_flip(x[0], 4)


def test_read_only_memory_mapped_arrays(tmp_path: Path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    labels = np.zeros(16, dtype=np.int64)
    labels.setflags(write=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = evaluate(_model(), (mapped, labels))
    assert result["n"] == 16


def test_bad_val_data_fails_before_training(data: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = data
    model = _model()
    before = _state(model)
    with pytest.raises(ValueError, match="val_data"):
        fit(model, (images, labels), recipe=QUICK, val_data=(images, labels[:3]), progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_single_image_last_batch_is_skipped_with_warning(data: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = data
    steps: list[int] = []
    cfg = dataclasses.replace(QUICK, batch_size=8)
    with pytest.warns(UserWarning, match="single image"):
        fit(
            _model(),
            (images[:17], labels[:17]),
            recipe=cfg,
            progress=False,
            params_hook=lambda m: steps.append(1),
        )
    assert len(steps) == 2  # 8 + 8 trained, the 17th image skipped instead of crashing BatchNorm


def test_bad_labels_in_a_later_loader_batch(data: tuple[np.ndarray, np.ndarray]) -> None:
    images = data[0]
    x = torch.from_numpy(images[:32]).permute(0, 3, 1, 2).float() / 255
    y = torch.zeros(32, dtype=torch.long)
    y[-1] = 10
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=False)
    with pytest.raises(ValueError, match="label 10 but the model has 10 outputs"):
        fit(_model(), loader, recipe=QUICK, progress=False)
    y[-1] = -2
    with pytest.raises(ValueError, match=">= 0"):
        evaluate(_model(), DataLoader(TensorDataset(x, y), batch_size=8))


class _NumpyDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Yields (uint8 HWC numpy image, int label), like a plain CIFAR folder dataset without transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.images[i], int(self.labels[i])


@pytest.mark.parametrize(
    "build",
    [
        lambda: cifar_resnet(8, shortcut="B"),
        lambda: cifar_bottleneck_resnet(11),
        lambda: cifar_preact_resnet(8),
        lambda: cifar_preact_resnet(11, block="bottleneck"),
        lambda: CifarVGG((16, "M", 32, "M", 64)),  # the VGG class at a test-friendly width
    ],
)
def test_fit_trains_every_architecture(build: object, data: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = data
    model = build()  # type: ignore[operator]
    before = _state(model)
    history = fit(
        model,
        _NumpyDataset(images[:16], labels[:16]),
        recipe=dataclasses.replace(QUICK, batch_size=8),
        progress=False,
    )
    assert np.isfinite(history[0]["train_loss"])
    changed = [
        k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])
    ]
    assert len(changed) > 0.5 * sum(1 for v in before.values() if v.is_floating_point())

r"""Temperature scaling (Guo et al., 2017): one scalar ``T > 0`` dividing the logits, fitted by minimum NLL.

The NLL :math:`f(\beta) = \frac{1}{N}\sum_i [\operatorname{logsumexp}_j(\beta z_{ij}) - \beta z_{i y_i}]` is
*convex* in the inverse temperature :math:`\beta = 1/T`, with derivatives
:math:`f'(\beta) = \frac1N\sum_i (\mathbb{E}_{p_i(\beta)}[z_i] - z_{i y_i})` and
:math:`f''(\beta) = \frac1N\sum_i \mathrm{Var}_{p_i(\beta)}[z_i] \ge 0`.  :func:`fit_temperature` therefore
runs a safeguarded Newton iteration on :math:`\beta` inside a sign-change bracket ``[1/T_max, 1/T_min]``
(Newton steps that leave the bracket are replaced by bisection): it converges quadratically to the exact
minimiser (to ~1e-12 relative), keeps ``T`` strictly positive, and runs on the logits' own device in float64.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from prunesafe._utils import module_device
from prunesafe.metrics._checks import InputKind
from prunesafe.metrics.calibration import _prepare

__all__ = ["TemperatureScaledModel", "fit_temperature"]

_LOGPROB_FLOOR = -1e4


# Rows per block: the float64 temporaries of one block stay a few MiB, so fitting adds O(N) memory
# (the per-row logit of the label), not several float64 copies of the (N, C) logits.
_BLOCK_ELEMS = 2**18


class _Blocks:
    """The validated scores cut into row blocks, each turned into float64 logits when used (private)."""

    def __init__(self, scores: Tensor, labels: Tensor, inputs: str, dtype: torch.dtype) -> None:
        self.scores, self.labels, self.inputs, self.dtype = scores, labels, inputs, dtype
        self.n = scores.shape[0]
        self.step = max(1, _BLOCK_ELEMS // max(1, scores.shape[1]))

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, self.n, self.step):
            z = self.scores[start : start + self.step].to(self.dtype)
            if self.inputs == "probs":
                z = torch.log(z).clamp_min_(_LOGPROB_FLOOR)
            y = self.labels[start : start + self.step]
            yield z, z.gather(1, y.unsqueeze(1)).squeeze(1)


def _nll_derivatives(blocks: _Blocks, beta: float) -> tuple[float, float, float]:
    """Mean NLL of ``softmax(beta z)`` and its first two derivatives in ``beta``, summed block by block."""
    f = g = h = 0.0
    for z, zy in blocks:
        a = z * beta
        lse = torch.logsumexp(a, dim=1)
        p = torch.exp(a.sub_(lse.unsqueeze(1)))
        pz = p.mul_(z)
        ez = pz.sum(1)
        ez2 = pz.mul_(z).sum(1)
        f += float((lse - beta * zy).sum())
        g += float((ez - zy).sum())
        h += float((ez2 - ez * ez).clamp_min(0).sum())
    return f / blocks.n, g / blocks.n, h / blocks.n


def fit_temperature(
    logits: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    *,
    inputs: InputKind = "logits",
    bounds: tuple[float, float] = (1e-2, 1e2),
    tol: float = 1e-12,
    max_iter: int = 100,
) -> float:
    """Fit the temperature ``T`` minimising the NLL of ``softmax(logits / T)`` on held-out data.

    Parameters
    ----------
    logits : Tensor or ndarray, shape (N, C)
        Validation logits (any device; the fit runs there, in float64).  With ``inputs="probs"`` the
        log-probabilities are used as logits (clamped below at -1e4 so that zero probabilities stay finite).
    labels : Tensor or ndarray, shape (N,)
        Integer class indices.
    inputs : {"logits", "probs"}, default "logits"
    bounds : (float, float), default (0.01, 100)
        Search interval ``(T_min, T_max)``, ``0 < T_min < T_max``.  If the optimum lies outside, the
        nearest bound is returned with a warning (e.g. every prediction correct -> T -> 0).
    tol : float, default 1e-12
        Relative tolerance on ``1/T``.
    max_iter : int, default 100

    Returns
    -------
    float
        The fitted temperature, ``> 0``.  ``T > 1`` softens an over-confident model.

    Examples
    --------
    >>> import torch
    >>> from prunesafe.metrics import fit_temperature
    >>> g = torch.Generator().manual_seed(0)
    >>> true_logits = torch.randn(20000, 10, generator=g) * 2
    >>> labels = torch.multinomial(torch.softmax(true_logits, 1), 1, generator=g).squeeze(1)
    >>> round(fit_temperature(true_logits * 2.5, labels), 1)   # over-confident by a factor 2.5
    2.5
    """
    t_min, t_max = (float(b) for b in bounds)
    if not (0.0 < t_min < t_max < math.inf):
        raise ValueError(f"`bounds` must satisfy 0 < T_min < T_max < inf, got {bounds!r}; e.g. (0.01, 100).")
    if not (tol > 0):
        raise ValueError(f"`tol` must be > 0, got {tol!r}.")
    scores, y = _prepare(logits, labels, inputs)
    dtype = torch.float32 if scores.device.type == "mps" else torch.float64
    z = _Blocks(scores, y, inputs, dtype)

    lo, hi = 1.0 / t_max, 1.0 / t_min  # bracket on beta = 1/T
    _, g_lo, _ = _nll_derivatives(z, lo)
    if g_lo >= 0:
        warnings.warn(f"NLL is minimised at T >= T_max = {t_max}; returning T_max.", stacklevel=2)
        return t_max
    _, g_hi, _ = _nll_derivatives(z, hi)
    if g_hi <= 0:
        warnings.warn(f"NLL is minimised at T <= T_min = {t_min}; returning T_min.", stacklevel=2)
        return t_min
    beta = min(max(1.0, lo), hi)
    for _ in range(max_iter):
        _, g, h = _nll_derivatives(z, beta)
        if g == 0.0:
            break
        if g > 0:
            hi = beta
        else:
            lo = beta
        step = beta - g / h if h > 0 else math.nan
        new = step if lo < step < hi else 0.5 * (lo + hi)
        if abs(new - beta) <= tol * beta:
            beta = new
            break
        beta = new
    else:
        warnings.warn(f"fit_temperature did not converge in {max_iter} iterations.", stacklevel=2)
    return 1.0 / beta


class TemperatureScaledModel(nn.Module):
    """Wrap a classifier so that it returns ``model(x) / T``.

    Parameters
    ----------
    model : nn.Module
        Any module returning ``(N, C)`` logits.
    temperature : float or Tensor
        ``T > 0`` (stored as a float32 buffer, so it is saved in the ``state_dict`` and moves with ``.to``).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from prunesafe.metrics import TemperatureScaledModel
    >>> net = nn.Linear(4, 3)
    >>> scaled = TemperatureScaledModel(net, 2.0)
    >>> x = torch.randn(5, 4)
    >>> torch.allclose(scaled(x), net(x) / 2.0)
    True
    """

    temperature: Tensor

    def __init__(self, model: nn.Module, temperature: float | Tensor) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
        t = float(temperature)
        if not (math.isfinite(t) and t > 0):
            raise ValueError(f"`temperature` must be a finite number > 0, got {temperature!r}.")
        self.model = model
        self.register_buffer("temperature", torch.tensor(t, dtype=torch.float32))

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        """Return the wrapped model's logits divided by the temperature."""
        out = self.model(*args, **kwargs)
        if not isinstance(out, Tensor):
            raise TypeError(f"the wrapped model must return a logits Tensor, got {type(out).__name__}.")
        return out / self.temperature.to(out.dtype)

    @classmethod
    def fit(
        cls,
        model: nn.Module,
        loader: Iterable[Any],
        *,
        device: torch.device | str | None = None,
        progress: bool = True,
        **fit_kwargs: Any,
    ) -> TemperatureScaledModel:
        """Collect ``model``'s logits on ``loader`` (eval mode, no grad) and fit the temperature.

        The model's train/eval mode (of every submodule) is restored afterwards, also after an error.

        ``loader`` yields ``(inputs, labels)`` pairs (extra items are ignored).  ``fit_kwargs`` go to
        :func:`fit_temperature`.  Use a held-out split, not the test set.

        Examples
        --------
        >>> import torch
        >>> from torch import nn
        >>> from prunesafe.metrics import TemperatureScaledModel
        >>> torch.manual_seed(0) and None
        >>> data = [(torch.randn(64, 4), torch.randint(0, 3, (64,))) for _ in range(4)]
        >>> scaled = TemperatureScaledModel.fit(nn.Linear(4, 3), data, progress=False)
        >>> float(scaled.temperature) > 0
        True
        """
        dev = module_device(model) if device is None else torch.device(device)
        iterator: Iterable[Any] = loader
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(loader, desc="temperature: collecting logits", unit="batch")
        # restore every submodule's own flag afterwards (a model in train mode may hold frozen eval parts)
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        all_logits: list[Tensor] = []
        all_labels: list[Tensor] = []
        try:
            with torch.no_grad():
                for batch in iterator:
                    if not isinstance(batch, tuple | list) or len(batch) < 2:
                        raise TypeError("`loader` must yield (inputs, labels) pairs.")
                    xb, yb = batch[0], batch[1]
                    all_logits.append(model(xb.to(dev)).detach())
                    all_labels.append(torch.as_tensor(yb).to(dev))
        finally:
            for m, was_training in modes:
                m.training = was_training
        if not all_logits:
            raise ValueError("`loader` yielded no batches; pass a non-empty validation loader.")
        t = fit_temperature(torch.cat(all_logits), torch.cat(all_labels), **fit_kwargs)
        return cls(model, t)

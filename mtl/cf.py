"""The closed-form correlation filter (CFNet's CF layer), differentiable, in the Fourier domain.

Ridge regression over all cyclic shifts of a multi-channel feature map ``x`` (C channels, H x W):

    w* = argmin_w  sum_u ( sum_c (w_c ⋆ x_c)[u] - y[u] )^2  +  lam * sum_c ||w_c||^2

with the circular cross-correlation ``(w ⋆ x)[u] = sum_t w[t] x[t + u]``. By Parseval the problem
splits over frequencies k into independent C-dimensional problems
``min_w |w^H x̂_k - ŷ_k|^2 + lam ||w||^2``, whose normal equations ``(x̂ x̂^H + lam I) w = x̂ conj(ŷ)`` are
a rank-one update of ``lam I``; Sherman-Morrison gives the closed form

    ŵ_c = x̂_c · conj(ŷ) / ( sum_c |x̂_c|^2 + lam ).

Everything here is made of differentiable torch ops, so the filter can sit inside a network trained
end to end (CFNet, Valmadre et al. 2017). :func:`solve_cf_direct` solves the same ridge regression
with an explicit circulant data matrix; it is the self-check (small sizes only).
"""
from __future__ import annotations

import torch


def _check_features(x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"features must be (B, C, H, W), got shape {tuple(x.shape)}")


def gaussian_label(height: int, width: int, sigma: float, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """A Gaussian desired response peaked at index (0, 0) with circular wrap-around, shape ``(H, W)``.

    The peak sits at zero shift (not the centre) so that the filter lines up with the features:
    with ``y`` peaked at 0, ``w`` resembles ``x`` at the same positions and its centre crop is the
    target's part of the filter.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    ys = torch.arange(height, device=device, dtype=dtype)
    xs = torch.arange(width, device=device, dtype=dtype)
    dy = torch.minimum(ys, height - ys)  # circular distance to 0
    dx = torch.minimum(xs, width - xs)
    return torch.exp(-(dy[:, None] ** 2 + dx[None, :] ** 2) / (2 * sigma**2))


def solve_cf(x: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """Closed-form multi-channel correlation filter.

    Args:
        x: features ``(B, C, H, W)``.
        y: desired response ``(H, W)`` or ``(B, H, W)``.
        lam: ridge regularisation (> 0).
    Returns:
        the filter ``w``, ``(B, C, H, W)``, real.
    """
    _check_features(x)
    if lam <= 0:
        raise ValueError(f"lam must be positive, got {lam}")
    height, width = x.shape[-2:]
    if y.shape[-2:] != (height, width):
        raise ValueError(f"label shape {tuple(y.shape)} does not match features {tuple(x.shape)}")
    x_hat = torch.fft.rfft2(x)                                   # (B, C, H, W//2+1) complex
    y_hat = torch.fft.rfft2(y.to(x.dtype))
    if y_hat.dim() == 2:
        y_hat = y_hat[None]
    energy = (x_hat.real**2 + x_hat.imag**2).sum(dim=1)          # (B, H, W//2+1) = sum_c |x̂_c|^2
    w_hat = x_hat * (y_hat.conj() / (energy + lam))[:, None]
    return torch.fft.irfft2(w_hat, s=(height, width))


def circular_xcorr(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Response ``r[u] = sum_c sum_t w_c[t] x_c[t + u]`` (circular), ``(B, C, H, W) x2 -> (B, H, W)``."""
    _check_features(w)
    _check_features(x)
    height, width = x.shape[-2:]
    r_hat = (torch.fft.rfft2(w).conj() * torch.fft.rfft2(x)).sum(dim=1)
    return torch.fft.irfft2(r_hat, s=(height, width))


def solve_cf_direct(x: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """The same ridge regression solved in the spatial domain, ``(A^T A + lam I) w = A^T y``.

    ``A`` has one row per cyclic shift ``u`` and one column per filter entry ``(c, t)``, with
    ``A[u, (c, t)] = x_c[t + u]``. Memory grows as ``(H W)^2 C``: for self-checks on small maps only.
    """
    _check_features(x)
    batch, channels, height, width = x.shape
    n = height * width
    if n * n * channels > 5e7:
        raise ValueError(f"solve_cf_direct is a self-check for small maps; {height}x{width}x{channels} is too big")
    idx_t = torch.arange(n)
    ty, tx = idx_t // width, idx_t % width
    rows = []
    for u in range(n):
        uy, ux = u // width, u % width
        shifted = ((ty + uy) % height) * width + (tx + ux) % width   # flat index of t + u
        rows.append(shifted)
    gather = torch.stack(rows)                                      # (n shifts, n positions)
    solutions = []
    for b in range(batch):
        flat = x[b].reshape(channels, n)                            # (C, n)
        a = flat[:, gather].permute(1, 0, 2).reshape(n, channels * n)  # A[u, c*n + t] = x_c[t+u]
        target = (y if y.dim() == 2 else y[b]).reshape(n).to(x.dtype)
        lhs = a.T @ a + lam * torch.eye(channels * n, dtype=x.dtype, device=x.device)
        solutions.append(torch.linalg.solve(lhs, a.T @ target).reshape(channels, height, width))
    return torch.stack(solutions)

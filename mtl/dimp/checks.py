"""DiMP's self-checks: each part of the optimizer and the initializer against an independent reference.

Every function builds a small random problem (seeded), computes a quantity two ways and returns
the numbers; notebook 05 prints them and ``tests/test_dimp.py`` asserts them.
"""
from __future__ import annotations

import numpy as np
import torch

from mtl.dimp.filter import apply_filter
from mtl.dimp.initializer import roi_pool
from mtl.dimp.loss import LearnedLossMaps, RadialBasis, distance_map, gaussian_label, residual
from mtl.dimp.optimizer import SteepestDescent, gauss_newton_step, gradient_and_jg, loss_value


def random_problem(seed: int = 0, batch: int = 2, images: int = 3, channels: int = 8, size: int = 9, k: int = 3,
                   hinge: bool = True, dtype=torch.float64) -> dict:
    """A small random least-squares / hinge problem: features, filter, maps, weights and ``lambda``.

    ``hinge=False`` sets ``m = 1`` (pure least squares); otherwise ``m`` is random in (0, 1).
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, images, channels, size, size, generator=g, dtype=dtype)
    f = 0.3 * torch.randn(batch, channels, k, k, generator=g, dtype=dtype)
    y = torch.rand(batch, images, size, size, generator=g, dtype=dtype)
    m = torch.ones_like(y) if not hinge else torch.rand(batch, images, size, size, generator=g, dtype=dtype)
    v = 0.5 + torch.rand(batch, images, size, size, generator=g, dtype=dtype)
    w = torch.rand(batch, images, generator=g, dtype=dtype) + 0.1
    return {"features": x, "filter": f, "y": y, "m": m, "v": v, "weight": w / w.sum(1, keepdim=True),
            "lam": torch.tensor(0.05, dtype=dtype)}


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def closed_form_gradient_error(seed: int = 0) -> float:
    """Relative error between the closed-form ``J^T r + lambda f`` and autograd's gradient of ``L``."""
    p = random_problem(seed)
    f = p["filter"].clone().requires_grad_(True)
    loss = loss_value(p["features"], f, p["y"], p["m"], p["v"], p["weight"], p["lam"]).sum()
    (auto,) = torch.autograd.grad(loss, f)
    g, _, _ = gradient_and_jg(p["features"], p["filter"], p["y"], p["m"], p["v"], p["weight"], p["lam"])
    return _relative(g, auto)


def jacobian_vector_error(seed: int = 0) -> float:
    """Relative error between ``J g`` (the filter applied to ``g``, masked) and ``torch.func.jvp`` of the residual."""
    p = random_problem(seed)
    g, jg, _ = gradient_and_jg(p["features"], p["filter"], p["y"], p["m"], p["v"], p["weight"], p["lam"])

    def r(filt):
        return residual(apply_filter(p["features"], filt), p["y"], p["m"], p["v"], p["weight"])

    _, jvp = torch.func.jvp(r, (p["filter"],), (g,))
    return _relative(jg, jvp)


def least_squares_line_search(seed: int = 0, grid: int = 4001) -> dict:
    """For ``m = 1`` the loss along ``-g`` is a parabola and ``alpha_GN`` is its exact minimiser.

    Returns ``alpha_gn``, ``alpha_grid`` (argmin of ``L(f - alpha g)`` on a fine grid over ``[0, 2 alpha_gn]``),
    ``alpha_exact`` (``g^T g / g^T H g``, the Hessian-vector product by double autograd) and
    ``parabola_error`` (max ``|L(f - alpha g) - (L - alpha ||g||^2 + alpha^2/2 g^T H g)|`` relative to ``L``).
    """
    p = random_problem(seed, batch=1, hinge=False)
    x, f0, y, m, v, w, lam = (p[k] for k in ("features", "filter", "y", "m", "v", "weight", "lam"))
    g, jg, loss0 = gradient_and_jg(x, f0, y, m, v, w, lam)
    alpha_gn = float(gauss_newton_step(g, jg, lam))
    f = f0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_value(x, f, y, m, v, w, lam).sum(), f, create_graph=True)
    (hg,) = torch.autograd.grad((grad * g).sum(), f)
    gtg, gthg = float((g * g).sum()), float((g * hg).sum())
    alphas = torch.linspace(0, 2 * alpha_gn, grid, dtype=x.dtype)
    losses = torch.stack([loss_value(x, f0 - a * g, y, m, v, w, lam)[0] for a in alphas])
    parabola = float(loss0) - alphas * gtg + 0.5 * alphas ** 2 * gthg
    return {"alpha_gn": alpha_gn, "alpha_exact": gtg / gthg, "alpha_grid": float(alphas[losses.argmin()]),
            "grid_step": float(alphas[1]), "parabola_error": float((losses - parabola).abs().max() / loss0),
            "alphas": alphas.numpy(), "losses": losses.detach().numpy(), "parabola": parabola.detach().numpy()}


def hinge_descent(seed: int = 0, iterations: int = 10, step: float = 1.0) -> dict:
    """With the hinge (``m`` in (0, 1)), Gauss-Newton steepest descent with ``exp(beta) = step <= 1``:
    the loss per iteration ``(iterations + 1,)``, its largest increase, and the line-search comparison
    of the first step (``alpha_gn`` vs the best ``alpha`` on a grid)."""
    p = random_problem(seed, batch=1)
    sd = SteepestDescent(iterations, lam_init=float(p["lam"]), step_init=step, learn=False).double()
    _, losses = sd(p["filter"], p["features"], p["y"], p["m"], p["v"], p["weight"])
    curve = torch.stack(losses)[:, 0].numpy()
    g, jg, _ = gradient_and_jg(p["features"], p["filter"], p["y"], p["m"], p["v"], p["weight"], sd.lam)
    alpha_gn = float(gauss_newton_step(g, jg, sd.lam))
    alphas = np.linspace(0, 3 * alpha_gn, 601)
    line = [float(loss_value(p["features"], p["filter"] - a * g, p["y"], p["m"], p["v"], p["weight"], sd.lam)[0])
            for a in alphas]
    return {"losses": curve, "max_increase": float(np.max(np.diff(curve))), "alpha_gn": alpha_gn,
            "alpha_best": float(alphas[int(np.argmin(line))]), "loss_at_gn": float(curve[1]) if step == 1 else None,
            "loss_best": float(np.min(line)), "alphas": alphas, "line": np.array(line)}


def steepest_vs_fixed_step(seed: int = 0, iterations: int = 10, lr: float | None = None) -> dict:
    """Loss curves of Gauss-Newton steepest descent and of gradient descent with one fixed step.

    The fixed step defaults to the first Gauss-Newton step (``alpha`` of iteration 0), the best constant
    one could pick without a line search at each iteration.
    """
    p = random_problem(seed, batch=1)
    x, f, y, m, v, w, lam = (p[k] for k in ("features", "filter", "y", "m", "v", "weight", "lam"))
    sd = SteepestDescent(iterations, lam_init=float(lam), step_init=1.0, learn=False).double()
    _, sd_losses = sd(f, x, y, m, v, w)
    g, jg, _ = gradient_and_jg(x, f, y, m, v, w, sd.lam)
    lr = float(gauss_newton_step(g, jg, sd.lam)) if lr is None else lr
    gd, filt = [], f
    for _ in range(iterations):
        g, _, loss = gradient_and_jg(x, filt, y, m, v, w, sd.lam)
        gd.append(float(loss[0]))
        filt = filt - lr * g
    gd.append(float(loss_value(x, filt, y, m, v, w, sd.lam)[0]))
    return {"steepest": torch.stack(sd_losses)[:, 0].numpy(), "fixed": np.array(gd), "lr": lr}


def basis_sum_error(num_bins: int = 100, bin_width: float = 0.1) -> float:
    """Largest ``|sum_k rho_k(d) - 1|`` over ``d`` in ``[0, 2 N delta]``."""
    d = torch.linspace(0, 2 * num_bins * bin_width, 5001, dtype=torch.float64)
    return float((RadialBasis(num_bins, bin_width)(d).sum(-1) - 1).abs().max())


def basis_interpolation_error(label_sigma: float = 1.2) -> float:
    """``sum_k phi_k rho_k(d)`` with ``phi^y`` at its initial values equals the piecewise-linear interpolant
    of ``G - min G`` through the bin centres (largest absolute difference; float32 rounding of the stored
    curve, about 1e-7)."""
    maps = LearnedLossMaps(label_sigma).double()
    d = torch.linspace(0, 9.8, 2001, dtype=torch.float64)
    y = maps.basis(d) @ maps.phi_y.detach()
    centers = maps.basis.centers.double()
    g = gaussian_label(centers, label_sigma)
    ref = np.interp(d.numpy(), centers.numpy(), (g - g.min()).numpy())
    return float(np.abs(y.detach().numpy() - ref).max())


def roi_pool_affine(seed: int = 0, out_size: int = 5, samples: int = 2) -> dict:
    """On an affine map ``F_c(x, y) = a_c + b_c x + c_c y`` ROI pooling is exact: bin ``(i, j)`` holds ``F`` at
    the bin's centre, and the box gradient is analytic. Returns the largest value and gradient errors."""
    g = torch.Generator().manual_seed(seed)
    c, h, w = 3, 14, 14
    a, bx, cy = (torch.randn(c, 1, 1, generator=g, dtype=torch.float64) for _ in range(3))
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    feat = (a + bx * xs + cy * ys)[None]
    box = torch.tensor([[3.3, 2.7, 5.1, 6.4]], dtype=torch.float64, requires_grad=True)
    pooled = roi_pool(feat, box, out_size, samples)
    centre = (torch.arange(out_size, dtype=torch.float64) + 0.5) / out_size
    x0, y0, bw, bh = box.detach()[0]
    expected = a + bx * (x0 + bw * centre)[None, None, :] + cy * (y0 + bh * centre)[None, :, None]
    weights = torch.randn(pooled.shape, generator=g, dtype=torch.float64)  # a random linear read-out of the pooled map
    (grad,) = torch.autograd.grad((pooled * weights).sum(), box)
    wsum = weights[0]  # (C, k, k)
    expected_grad = torch.stack([
        (wsum * bx).sum(), (wsum * cy).sum(),
        (wsum * bx * centre[None, None, :]).sum(), (wsum * cy * centre[None, :, None]).sum()])
    return {"value_error": float((pooled.detach()[0] - expected).abs().max()),
            "gradient_error": float((grad[0] - expected_grad).abs().max()),
            "gradient": grad[0].tolist(), "expected_gradient": expected_grad.tolist()}


def delta_peak(size: int = 14, k: int = 5, center=(6.0, 8.0)) -> dict:
    """A one-hot feature at the target's cell and a one-hot filter at the filter's centre: the score peak is
    exactly at the label's peak (no half-cell shift from padding or filter size)."""
    x = torch.zeros(1, 1, 1, size, size)
    cx, cy = int(center[0]), int(center[1])
    x[0, 0, 0, cy, cx] = 1.0
    f = torch.zeros(1, 1, k, k)
    f[0, 0, k // 2, k // 2] = 1.0
    s = apply_filter(x, f)[0, 0]
    label = gaussian_label(distance_map(torch.tensor([[float(cx), float(cy)]]), size), 1.2)[0]
    peak_s = divmod(int(s.argmax()), size)
    peak_y = divmod(int(label.argmax()), size)
    return {"score_peak": peak_s, "label_peak": peak_y, "same": peak_s == peak_y}


def all_checks() -> dict:
    """Every check's headline number (what notebook 05 prints and the tests bound)."""
    ls = least_squares_line_search()
    hd = hinge_descent()
    roi = roi_pool_affine()
    return {
        "closed_form_gradient_rel_error": closed_form_gradient_error(),
        "jg_vs_jvp_rel_error": jacobian_vector_error(),
        "least_squares_alpha_gn": ls["alpha_gn"], "least_squares_alpha_exact": ls["alpha_exact"],
        "least_squares_alpha_grid": ls["alpha_grid"], "parabola_rel_error": ls["parabola_error"],
        "hinge_max_loss_increase": hd["max_increase"], "hinge_alpha_gn": hd["alpha_gn"], "hinge_alpha_best": hd["alpha_best"],
        "basis_sum_error": basis_sum_error(), "basis_interpolation_error": basis_interpolation_error(),
        "roi_value_error": roi["value_error"], "roi_gradient_error": roi["gradient_error"],
        "delta_peak_same": delta_peak()["same"],
    }

"""Self-checks of ROAM's parts that notebook 06 prints and ``tests/test_roam.py`` asserts
(``specs/dimp_roam.md`` §2(e)). Each returns numbers that a wrong implementation would change."""
from __future__ import annotations

import math

import torch

from mtl.roam.loss import response_label, response_loss
from mtl.roam.model import ThetaLayout, filter_shape, resize_filter, response
from mtl.roam.optimizer import CoordinateLSTM, draw_rfs, lstm_inputs, preprocess_gradient, rfs_theta_step


def resize_checks(seed: int = 0) -> dict:
    """Resizing to the canonical shape returns the filter exactly; ``gradcheck`` of a warp to another shape
    (float64); filter shapes are odd and, for a fixed target area, depend only on the aspect ratio."""
    g = torch.Generator().manual_seed(seed)
    filt = torch.randn(1, 3, 9, 9, generator=g, dtype=torch.float64)
    same = float((resize_filter(filt, (9, 9)) - filt).abs().max())
    via_interp = torch.nn.functional.interpolate(filt, size=(9, 9), mode="bilinear", align_corners=True)
    grad_ok = torch.autograd.gradcheck(lambda f: resize_filter(f, (7, 13)), (filt.clone().requires_grad_(True),))
    # targets of the crop's normalised area (sqrt(wh) = 4.8 cells) at aspect ratios w / h
    targets = {a: (4.8 * math.sqrt(a), 4.8 / math.sqrt(a)) for a in (0.25, 0.5, 1.0, 2.0, 4.0)}
    shapes = {a: filter_shape(wh) for a, wh in targets.items()}
    return {"canonical_error": same, "interpolate_error": float((via_interp - filt).abs().max()),
            "gradcheck": bool(grad_ok), "shapes": shapes,
            "all_odd": all(r % 2 == 1 and c % 2 == 1 for r, c in shapes.values()),
            "square_is_canonical": shapes[1.0] == (9, 9),
            "anchors_cover_target": all(c / 1.5 >= targets[a][0] and r / 1.5 >= targets[a][1] for a, (r, c) in shapes.items())}


def preprocessing_checks(p: float = 10.0) -> dict:
    """Both parts of :func:`preprocess_gradient` just below and above ``|g| = e^-p`` (continuity), and the sign
    of the second part against ``sign g`` on random gradients over many magnitudes."""
    t = math.exp(-p)
    g = torch.tensor([t * (1 - 1e-9), t * (1 + 1e-9), -t * (1 - 1e-9), -t * (1 + 1e-9)], dtype=torch.float64)
    out = preprocess_gradient(g, p)
    jump = float(max((out[0] - out[1]).abs().max(), (out[2] - out[3]).abs().max()))
    r = torch.randn(10_000, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * torch.logspace(-8, 2, 10_000,
                                                                                                              dtype=torch.float64)
    kept = bool((torch.sign(preprocess_gradient(r, p)[:, 1]) == torch.sign(r)).all())
    return {"jump_at_threshold": jump, "sign_kept": kept}


def _toy_model_problem(seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    layout = ThetaLayout.for_model(6, 3, 5)
    theta = layout.flatten(layout.initial(g, scale=1.0)).to(dtype)
    x = torch.randn(4, 6, 10, 10, generator=g, dtype=dtype)
    boxes = torch.tensor([[3.0, 3.0, 3.0, 3.0], [2.0, 4.0, 4.0, 2.0], [4.0, 3.0, 2.0, 4.0], [3.5, 3.5, 3.0, 3.0]],
                         dtype=dtype)
    labels = response_label(boxes, 10)
    return layout, theta, x, labels


def sgd_equivalence(seed: int = 0) -> dict:
    """With ``eps = 1`` and a constant LSTM output, one ROAM step equals one SGD step at that rate; and the
    RFS identity: a ``theta'`` step of ``lam`` moves ``theta = eps theta'`` by ``-lam eps^2 dL/dtheta``."""
    layout, theta, x, labels = _toy_model_problem(seed)
    shape = (5, 5)

    def loss_of(flat):
        return response_loss(response(layout.unflatten(flat), x, shape), labels, margin=0.0)

    th = theta.clone().requires_grad_(True)
    loss = loss_of(th)
    (grad,) = torch.autograd.grad(loss, th)
    lstm = CoordinateLSTM(lambda_max=0.5).double()  # output weight 0: a constant rate
    with torch.no_grad():
        lam, _ = lstm(lstm_inputs(theta, grad, loss, torch.zeros_like(theta), lstm.lambda_max))
    roam = theta - lam * grad
    sgd = theta - float(lam[0]) * grad
    # RFS: optimise theta' = theta / eps, the model sees eps theta'
    eps = draw_rfs(theta.numel(), 1.6, torch.Generator().manual_seed(seed + 1)).double()
    tp = (theta / eps).requires_grad_(True)
    (grad_p,) = torch.autograd.grad(loss_of(eps * tp), tp)
    lam_c = 0.01
    moved = eps * (tp.detach() - lam_c * grad_p) - theta
    predicted = rfs_theta_step(lam_c, eps, grad)
    return {"rates_constant": float(lam.max() - lam.min()), "roam_vs_sgd": float((roam - sgd).abs().max()),
            "rfs_step_error": float((moved - predicted).abs().max()), "rfs_step_size": float(predicted.abs().max())}


def first_step_gradients(seed: int = 0, h: float = 1e-6) -> dict:
    """The meta-loss of the second-order first step ``L_meta(theta0 - lambda0 * dL_update/dtheta0)`` against central
    finite differences (float64), for one ``lambda0`` entry and one ``theta0`` entry."""
    layout, theta0, x, labels = _toy_model_problem(seed)
    shape = (5, 5)
    lam0 = torch.full_like(theta0, 0.05)

    def meta(theta, lam):
        upd = response_loss(response(layout.unflatten(theta), x[:2], shape), labels[:2], margin=0.0)
        (g,) = torch.autograd.grad(upd, theta, create_graph=True)
        new = theta - lam * g
        return response_loss(response(layout.unflatten(new), x[2:], shape), labels[2:], margin=0.0)

    t, l = theta0.clone().requires_grad_(True), lam0.clone().requires_grad_(True)
    gt, gl = torch.autograd.grad(meta(t, l), (t, l))
    i_t, i_l = int(torch.argmax(gt.abs())), int(torch.argmax(gl.abs()))

    def fd(vec_is_theta: bool, i: int) -> float:
        vals = []
        for s in (h, -h):
            tt, ll = theta0.clone(), lam0.clone()
            (tt if vec_is_theta else ll)[i] += s
            vals.append(float(meta(tt.requires_grad_(True), ll).detach()))
        return (vals[0] - vals[1]) / (2 * h)

    return {"theta0": {"autograd": float(gt[i_t]), "finite_difference": fd(True, i_t)},
            "lambda0": {"autograd": float(gl[i_l]), "finite_difference": fd(False, i_l)}}


def rfs_toy(kappa: float = 1.6, steps: int = 300, coordinates: int = 512, x: float = 1.0, seed: int = 0,
            test_scales=(0.37, 1.0, 2.7)) -> dict:
    """Why RFS spreads the learned rates (ROAM's Fig. 2, in seconds): independent 1-D problems
    ``g(theta) = (x theta - y)^2``, one per coordinate, whose best one-step rate is ``1 / (2 x^2)``.

    A :class:`CoordinateLSTM` learns one step's rates on them with ``eps = 1`` (no RFS) or with RFS
    (``theta = eps theta'``, so each coordinate's best rate becomes ``1 / (2 x^2 eps^2)``). Returned: the
    rates each optimizer writes on its own training problems, and its mean loss after one step
    relative to before on problems at other scales ``x * s``.
    """
    out = {}
    for name, k in (("without RFS", 0.0), ("with RFS", kappa)):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        lstm = CoordinateLSTM(lambda_max=4.0 / (x * x), init_fraction=0.05)
        opt = torch.optim.Adam(lstm.parameters(), lr=3e-3)

        def one_step(scale, eps, train=True):
            y = torch.randn(coordinates, generator=gen)
            theta_p = torch.randn(coordinates, generator=gen) / eps  # theta' = theta / eps
            loss_vec = lambda tp: (scale * eps * tp - y) ** 2  # noqa: E731
            before = loss_vec(theta_p)
            grad = 2 * scale * eps * (scale * eps * theta_p - y)
            lam, _ = lstm(lstm_inputs(theta_p, grad, before.mean(), torch.zeros_like(theta_p), lstm.lambda_max))
            after = loss_vec(theta_p - lam * grad)
            return after.mean(), before.mean(), lam

        for _ in range(steps):
            eps = draw_rfs(coordinates, k, gen)
            after, _, _ = one_step(x, eps)
            opt.zero_grad()
            after.backward()
            opt.step()
        with torch.no_grad():
            _, _, lam = one_step(x, draw_rfs(coordinates, k, gen))
            ratios = {}
            for s in test_scales:
                a, b, _ = one_step(x * s, torch.ones(coordinates))
                ratios[s] = float(a / b)
        out[name] = {"rates": lam.numpy(), "rate_spread": float(lam.log().std()), "loss_ratio_at_scale": ratios}
    return out


def regression_checks(seed: int = 0) -> dict:
    """ROAM++'s box coding: decoding the encoded deltas returns the boxes (max error), the regression loss of
    exact deltas is 0 and grows with an error at the best anchor; anchors are the warped filter's extent / rho."""
    from mtl.roam.loss import regression_loss
    from mtl.roam.model import anchor_boxes, decode_deltas, encode_deltas

    g = torch.Generator().manual_seed(seed)
    shape = filter_shape((4.8 * 1.4, 4.8 / 1.4))  # a wide target of the normalised area
    anchors = anchor_boxes(14, shape)
    boxes = torch.cat([torch.rand(5, 2, generator=g) * 8 + 2, torch.rand(5, 2, generator=g) * 4 + 2], dim=1)
    exact = torch.stack([encode_deltas(anchors, b.expand(len(anchors), 4)).T.reshape(4, 14, 14) for b in boxes])
    decoded = torch.stack([decode_deltas(anchors, e.flatten(1).T) for e in exact])
    off = exact + 0.3 * torch.randn(exact.shape, generator=g)
    return {"round_trip_error": float((decoded - boxes[:, None]).abs().max()),
            "loss_exact": float(regression_loss(exact, boxes, anchors)),
            "loss_noisy": float(regression_loss(off, boxes, anchors)),
            "anchor_size": tuple(float(v) for v in anchors[0, 2:]), "filter_shape": shape}


__all__ = ["resize_checks", "preprocessing_checks", "sgd_equivalence", "first_step_gradients", "rfs_toy",
           "regression_checks"]

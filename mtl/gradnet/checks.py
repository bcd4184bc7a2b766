"""GradNet's self-checks, shared by notebook 03 and the unit tests; each returns numbers that could fail.

They run on a *tiny* GradNet in float64 (:func:`tiny_gradnet`) working directly on shallow features
``f2`` and search features (no images), so finite differences and ``gradcheck`` take seconds.
"""
from __future__ import annotations

import torch
from torch.func import functional_call

from mtl.gradnet.net import GradNetConfig, GradNetNet
from mtl.losses import siamfc_labels


def tiny_gradnet(seed: int = 0, dtype=torch.float64, **config) -> GradNetNet:
    """A GradNet of width 0.05 (channels 4-12-20-20-12) in ``dtype`` with a *non-zero* U2 and ``c = 1``.

    U2's BN scale is drawn at random (the real one starts at 0, where U2 has no effect and the
    second-order path contributes nothing to check).
    """
    torch.manual_seed(seed)
    net = GradNetNet(width=0.05, out_scale=0.1, config=GradNetConfig(**config)).to(dtype).eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.normal_(0, 0.3)
                if module.bias is not None:
                    module.bias.normal_(0, 0.1)
        net.update_branch.bn.weight.normal_(0, 1.0)
        net.update_branch.bn.bias.normal_(0, 0.1)
        net.update_branch.conv.weight.normal_(0, 0.3)
    return net


def random_problem(net: GradNetNet, templates: int = 2, searches: int = 3, search_cells: int = 8, seed: int = 1):
    """``(f2 (templates, C2, 12, 12), x_feats (searches, C, s, s), labels (searches, h, w))`` in the net's dtype.

    Labels: SiamFC's disc of radius 1 cell at a random offset per search (so each differs).
    """
    g = torch.Generator().manual_seed(seed)
    p = next(net.parameters())
    c2, c = net.template_branch.channels[1], net.backbone.out_channels
    f2 = torch.rand(templates, c2, 12, 12, generator=g, dtype=p.dtype)  # post-ReLU/pool: non-negative
    x = torch.randn(searches, c, search_cells, search_cells, generator=g, dtype=p.dtype)
    h = search_cells - 6 + 1
    base = torch.from_numpy(siamfc_labels(h, 1.0)).to(p.dtype)
    shifts = torch.randint(-1, 2, (searches, 2), generator=g)
    labels = torch.stack([torch.roll(base, (int(dy), int(dx)), (0, 1)) for dx, dy in shifts])
    return f2, x, labels


def finite_difference_error(net: GradNetNet, f2, x_feats, labels, coordinates: int = 25, eps: float = 1e-6,
                            seed: int = 0) -> float:
    """Max relative error of ``g = ∂L/∂f2`` (autograd) against central differences at random coordinates.

    L is template 0's mean loss over every search crop (all pairs). Relative to ``max |g|``.
    """
    g, *_ = net.inner_gradient(f2, x_feats, labels, all_pairs=True, create_graph=False)
    gen = torch.Generator().manual_seed(seed)
    flat = torch.randint(0, f2[0].numel(), (coordinates,), generator=gen)
    worst = 0.0
    scale = float(g[0].abs().max())
    for i in flat.tolist():
        def loss_at(delta):
            f = f2.detach().clone()
            f[0].view(-1)[i] += delta
            with torch.no_grad():
                return float(net.template_losses(net.scores(net.upper(f), x_feats, True), labels, True)[0])
        numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
        worst = max(worst, abs(numeric - float(g[0].view(-1)[i])) / scale)
    return worst


def second_order_gradcheck(net: GradNetNet, f2, x_feats, labels, fast: bool = True, create_graph: bool = True) -> bool:
    """``torch.autograd.gradcheck`` of ``L*`` w.r.t. f2 and U1's first conv weight, through ``g`` (create_graph).

    ``L*`` depends on U1's weight twice: in the second pass, and inside ``g`` (the second-order path);
    gradcheck compares both analytic terms together against finite differences. ``fast``: gradcheck's
    fast mode (random projections, seconds instead of tens of seconds). ``create_graph=False`` drops the
    second-order path from the analytic gradient: the check must then fail (the notebook shows it).
    """
    name = "net.template_branch.conv3.0.weight"
    module = _RefinedLoss(net, create_graph)
    f = f2[:1].detach().clone().requires_grad_(True)
    w = dict(module.named_parameters())[name].detach().clone().requires_grad_(True)
    return bool(torch.autograd.gradcheck(
        lambda f_, w_: functional_call(module, {name: w_}, args=(f_, x_feats, labels), strict=False),
        (f, w), eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=fast, raise_exception=False))


def directional_error(net: GradNetNet, f2, x_feats, labels, create_graph: bool = True, eps: float = 1e-6,
                      seed: int = 0) -> float:
    """Relative error of the analytic ``dL*/dU1`` along a random direction against a central difference.

    ``L*`` as :func:`second_order_gradcheck`, differentiated w.r.t. every U1 weight. With
    ``create_graph=False`` the analytic side misses the second-order path: the error is then large.
    """
    upper = [p for n, p in net.named_parameters() if n.startswith(_UPPER)]
    gen = torch.Generator().manual_seed(seed)
    direction = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in upper]
    loss = net.refine(f2, x_feats, labels, all_pairs=True, create_graph=create_graph).loss_star.mean()
    analytic = sum(float((g * d).sum()) for g, d in zip(torch.autograd.grad(loss, upper), direction))

    def loss_at(t):
        with torch.no_grad():
            for p, d in zip(upper, direction):
                p.add_(t * d)
        try:
            with torch.no_grad():
                return float(net.refine(f2, x_feats, labels, all_pairs=True).loss_star.mean())
        finally:
            with torch.no_grad():
                for p, d in zip(upper, direction):
                    p.sub_(t * d)

    numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    return abs(analytic - numeric) / max(abs(numeric), 1e-30)


_UPPER = ("template_branch.conv3", "template_branch.conv4", "template_branch.conv5")


class _RefinedLoss(torch.nn.Module):
    """``L* = mean(refine(f2, x, labels).loss_star)`` as a module, so ``functional_call`` can swap a weight."""

    def __init__(self, net: GradNetNet, create_graph: bool = True):
        super().__init__()
        self.net, self.create_graph = net, create_graph

    def forward(self, f2, x_feats, labels):
        return self.net.refine(f2, x_feats, labels, all_pairs=True, create_graph=self.create_graph).loss_star.mean()


def first_order_difference(net: GradNetNet, f2, x_feats, labels) -> float:
    """``‖∇_U1 L*(full) − ∇_U1 L*(g detached)‖ / ‖∇_U1 L*(full)‖``: how much the second-order path changes U1's gradient."""
    upper = [p for n, p in net.named_parameters() if n.startswith(_UPPER)]
    grads = []
    for create_graph in (True, False):
        loss = net.refine(f2, x_feats, labels, all_pairs=True, create_graph=create_graph).loss_star.mean()
        grads.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, upper)]))
    return float((grads[0] - grads[1]).norm() / grads[0].norm())


def joint_vs_own_gradient(net: GradNetNet, f2, x_feats, labels) -> float:
    """Max |row b of the batch's joint inner gradient − template b's gradient computed alone| (all pairs)."""
    g_joint, *_ = net.inner_gradient(f2, x_feats, labels, all_pairs=True, create_graph=False)
    worst = 0.0
    for b in range(f2.shape[0]):
        g_own, *_ = net.inner_gradient(f2[b:b + 1], x_feats, labels, all_pairs=True, create_graph=False)
        worst = max(worst, float((g_joint[b] - g_own[0]).abs().max()))
    return worst


def alone_vs_batch(net: GradNetNet, f2, x_feats, labels) -> float:
    """Max |β* of template b refined alone − β* of b refined in the batch| (paired: template b with search b)."""
    n = min(f2.shape[0], x_feats.shape[0])
    with torch.no_grad():
        batch = net.refine(f2[:n], x_feats[:n], labels[:n], all_pairs=False).beta_star
        alone = torch.cat([net.refine(f2[b:b + 1], x_feats[b:b + 1], labels[b:b + 1], all_pairs=False).beta_star
                           for b in range(n)])
    return float((batch - alone).abs().max())

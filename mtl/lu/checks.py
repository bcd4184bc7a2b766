"""Self-checks of the learned updater (notebook 04 and ``tests/test_lu.py`` run the same functions).

Each returns a number (a max difference, a gradient norm) so the notebook can print it and a test
can bound it; each could fail:

1. :func:`gru_cell_error`: the ConvGRU cell with 1x1 kernels on 1x1 maps against a hand-written GRU
   of the same (Cho) convention.
2. :func:`ema_special_case_error`: with layer normalisation off, a constant update gate ``α``, the
   candidate equal to the input and the state started at ``θ₁``, the updater *is* notebook 02's EMA:
   the same templates and boxes on a sequence.
3. :func:`stepwise_error`: stepping frame by frame equals one pass over the sequence.
4. :func:`truncation_gradients`: after a truncated-BPTT cut, the loss of a window has zero gradient
   with respect to the frames before the cut and non-zero inside the window.
5. :func:`cut_exemplar_error`: the 6x6 window of a 255 crop's features equals the features of the
   127 px sub-crop, computed afresh.
6. :func:`anchor_loss_is_scale_free`: ``l_a(θ₁, θ₁) = 0`` and ``l_a`` does not change when the features
   are rescaled.
7. :func:`cf_exemplar_error` (CFNet-LU): a cached crop's map re-centred by whole cells equals the map of
   the crop moved by 8 px a cell wherever the cached crop covers it, and the correlation filter of it
   is exact at the centre; off the centre its error is measured (the zero strip, our approximation).
"""
from __future__ import annotations

import numpy as np
import torch

from mtl.lu.features import CorrelationFilterExemplar, exemplar_windows, recentred_features
from mtl.lu.net import ConvGRUCell, LUConfig, LUNet


def gru_cell_error(channels: int = 5, hidden: int = 4, batch: int = 3, seed: int = 0) -> float:
    """Max |ConvGRUCell - hand-written GRU| on 1x1 maps with 1x1 kernels (float64, no normalisation)."""
    g = torch.Generator().manual_seed(seed)
    cell = ConvGRUCell(channels, hidden, kernel_size=1, layer_norm=False).double()
    with torch.no_grad():
        for p in cell.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
        x = torch.randn(batch, channels, generator=g, dtype=torch.float64)
        h = torch.randn(batch, hidden, generator=g, dtype=torch.float64)
        # the same weights as matrices: gates (2 hidden, channels + hidden), candidate (hidden, channels + hidden)
        wg, bg = cell.gates.weight[:, :, 0, 0], cell.gates.bias
        wc, bc = cell.candidate.weight[:, :, 0, 0], cell.candidate.bias
        xh = torch.cat([x, h], 1)
        u = torch.sigmoid(xh @ wg[:hidden].T + bg[:hidden])
        r = torch.sigmoid(xh @ wg[hidden:].T + bg[hidden:])
        c = torch.tanh(torch.cat([x, r * h], 1) @ wc.T + bc)
        expected = (1 - u) * h + u * c
        got = cell(x[:, :, None, None], h[:, :, None, None])[:, :, 0, 0]
    return float((got - expected).abs().max())


class EMANet(LUNet):
    """The updater in the special case that is an EMA of rate ``α`` (check 2): one layer, ``hidden = d``.

    Update gate ``σ(logit α) = α`` (zero weights), reset gate open, candidate = input (identity
    activation, identity weights on the input, none on the state), output conv = identity, and the
    state started at ``θ'₁ / s`` instead of zeros, so that ``θ_t = (1 - α) θ_{t-1} + α θ'_t``.
    """

    def __init__(self, channels: int, rate: float, scale: float = 1.0):
        cfg = LUConfig(hidden=channels, layers=1, layer_norm=False, dropout=0.0, interval=1, unroll=1)
        super().__init__(channels, cfg, scale)
        cell = self.cells[0]
        cell.activation = "identity"
        eye = torch.eye(channels)
        with torch.no_grad():
            cell.gates.weight.zero_()
            cell.gates.bias[:channels] = float(np.log(rate / (1 - rate)))  # update gate = rate
            cell.gates.bias[channels:] = 30.0  # reset gate = 1 (unused: the candidate ignores the state)
            cell.candidate.weight.zero_()
            cell.candidate.weight[:, :channels, 1, 1] = eye
            cell.candidate.bias.zero_()
            self.out.weight.zero_()
            self.out.weight[:, :, 1, 1] = eye
            self.out.bias.zero_()

    def initial_state(self, theta1: torch.Tensor) -> list[torch.Tensor]:
        return [theta1 / self.scale]


def ema_special_case_error(siamfc_net, sequence, rate: float = 0.1, frames: int = 30) -> dict:
    """Track ``sequence`` (first ``frames`` frames) with notebook 02's EMA and with :class:`EMANet` in :class:`LUUpdater`.

    Returns ``{"template": max |θ_LU - θ_EMA| over frames, relative to ‖θ₁‖, "boxes": max box difference (px)}``.
    """
    from mtl.lu.tracker import LUUpdater
    from mtl.siamfc import SiamFCTracker
    from mtl.updaters import EMAUpdater

    channels = siamfc_net.backbone.out_channels
    ema = SiamFCTracker(siamfc_net, updater=EMAUpdater(rate))
    lu = SiamFCTracker(siamfc_net, updater=LUUpdater(EMANet(channels, rate, scale=3.7), interval=1))
    seq = sequence.first(frames) if hasattr(sequence, "first") else sequence
    template_diff, box_diff = 0.0, 0.0
    for t in (ema, lu):
        t.init(seq.frame(0), seq.boxes[0])
    norm = float(ema.template0.norm())
    for f in range(1, len(seq)):
        image = seq.frame(f)
        b1, b2 = ema.update(image), lu.update(image)
        box_diff = max(box_diff, float(np.abs(b1 - b2).max()))
        template_diff = max(template_diff, float((ema.template - lu.template).abs().max()) / norm)
    return {"template": template_diff, "boxes": box_diff}


def stepwise_error(net: LUNet, steps: int = 7, batch: int = 2, seed: int = 0) -> float:
    """Max |model after each step, stepping by hand - ``net(sequence)``| (eval mode: no dropout)."""
    g = torch.Generator().manual_seed(seed)
    net = net.eval()
    seq = torch.randn(steps, batch, net.channels, 6, 6, generator=g)
    with torch.no_grad():
        full = net(seq)
        state = net.initial_state(seq[0])
        by_hand = []
        for tp in seq:
            state = net.step(state, tp)
            by_hand.append(net.model(state))
    return float((torch.stack(by_hand) - full).abs().max())


def truncation_gradients(net: LUNet, head, config: LUConfig, clip_length: int = 11, batch: int = 2,
                         seed: int = 0) -> dict:
    """Gradient norms of the second window's loss with respect to each step's updater input θ'_s (truncated BPTT).

    Runs :class:`mtl.lu.train.LUUnroll` over a random clip cut in windows of ``config.unroll`` steps,
    with a zero perturbation ``δ_s`` (requiring gradients) added to every step's input ``θ'_s``, and
    differentiates the loss of the window that starts at the cut (step ``unroll``) with respect to
    every ``δ_s``. Returns ``{"before_cut": max norm over the steps before the cut, "inside": min norm
    over the steps of the second window whose input reaches a model replaced inside it (``s <= cut + H - M``),
    "per_step": [norm]}``: the first must be 0, the second > 0.
    """
    from mtl.lu.train import ClipWindows, LUUnroll

    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, clip_length, net.channels, 22, 22, generator=g)
    offsets = torch.zeros(batch, clip_length, 2)
    visible = torch.ones(batch, clip_length, dtype=torch.bool)
    deltas: list[torch.Tensor] = []

    def perturbed(x):
        d = torch.zeros_like(x, requires_grad=True)
        deltas.append(d)
        return x + d

    unroll = LUUnroll(head, config, project=perturbed)
    starts = list(ClipWindows(z, offsets, visible, batch, config.unroll, shuffle=False)._starts())
    if len(starts) < 2:
        raise ValueError(f"clip_length {clip_length} gives one window of {config.unroll} steps; need two")
    net = net.eval()
    for t0 in starts[:2]:
        t1 = min(t0 + config.unroll, clip_length - 1)
        loss = unroll(net, (z[:, t0:t1 + 1], offsets[:, t0:t1 + 1], visible[:, t0:t1 + 1], torch.tensor(t0)))["loss"]
    grads = torch.autograd.grad(loss, deltas, allow_unused=True)
    norms = [0.0 if gr is None else float(gr.norm()) for gr in grads]
    cut = starts[1]
    last_feeding = min(cut + config.unroll - config.interval, len(norms) - 1)
    return {"before_cut": max(norms[:cut]), "inside": min(norms[cut:last_feeding + 1]), "per_step": norms}


def cut_exemplar_error(backbone, image: np.ndarray | None = None, cells=((8, 8), (3, 12), (16, 0)), seed: int = 0) -> float:
    """Max |window of the 255 crop's features at ``cells`` - features of the 127 sub-crop at pixel ``8 * cell``|.

    ``image``: a ``(255, 255, 3)`` uint8 search crop (default: random pixels). Backbone in eval mode.
    """
    from mtl.ops import image_to_tensor

    if image is None:
        image = np.random.default_rng(seed).integers(0, 256, size=(255, 255, 3), dtype=np.uint8)
    backbone = backbone.eval()
    device = next(backbone.parameters()).device
    with torch.no_grad():
        feats = backbone(image_to_tensor(image).to(device))
        err = 0.0
        for i, j in cells:
            cut = exemplar_windows(feats, torch.tensor([[i, j]]))
            fresh = backbone(image_to_tensor(np.ascontiguousarray(image[8 * i:8 * i + 127, 8 * j:8 * j + 127])).to(device))
            err = max(err, float((cut - fresh).abs().max()))
    return err


def anchor_loss_is_scale_free(seed: int = 0) -> dict:
    """:func:`mtl.lu.train.anchor_loss`: ``l_a(θ₁, θ₁)`` and the change of ``l_a`` when θ and θ₁ are both multiplied by 1000 or the channels doubled."""
    from mtl.lu.train import anchor_loss

    g = torch.Generator().manual_seed(seed)
    theta1 = torch.randn(2, 8, 6, 6, generator=g, dtype=torch.float64)
    theta = theta1 + 0.3 * torch.randn(2, 8, 6, 6, generator=g, dtype=torch.float64)
    base = anchor_loss(theta, theta1)
    doubled = anchor_loss(torch.cat([theta, theta], 1), torch.cat([theta1, theta1], 1))
    return {"at_anchor": float(anchor_loss(theta1, theta1).abs().max()),
            "rescaled": float((anchor_loss(1000 * theta, 1000 * theta1) - base).abs().max()),
            "more_channels": float((doubled - base).abs().max())}


def cf_exemplar_error(cfnet, image: np.ndarray | None = None,
                      shifts=((0, 0), (1, 0), (0, -2), (2, 2), (3, -3), (5, 0), (8, -8)), seed: int = 0) -> dict:
    """CFNet's exemplar from a cached crop vs from a fresh crop at the moved position, per shift ``(rows, cols)`` in cells.

    ``cfnet``: a :class:`mtl.cfnet.CFNetNet` (put in eval mode); ``image``: ``(H, W, 3)`` uint8 with room
    for a 255 px crop moved by the largest shift (default: random pixels). Returns ``{"overlap": max |re-centred
    map - fresh map| over the cells the cached crop covers (every shift; 0 up to rounding), "by_shift":
    {"dr,dc": ‖θ'(re-centred) - θ'(fresh)‖ / ‖θ'(fresh)‖}}`` (0 at ``(0, 0)``).
    """
    from mtl.ops import image_to_tensor

    reach = 8 * max(max(abs(a), abs(b)) for a, b in shifts)
    if image is None:
        image = np.random.default_rng(seed).integers(0, 256, size=(255 + 2 * reach, 255 + 2 * reach, 3), dtype=np.uint8)
    if min(image.shape[:2]) < 255 + 2 * reach:
        raise ValueError(f"the image must be at least {255 + 2 * reach} px on each side for shifts up to {reach // 8} cells")
    cfnet = cfnet.eval()
    device = next(cfnet.parameters()).device
    exemplar = CorrelationFilterExemplar(cfnet.cf)
    size = cfnet.cf.template_size
    out = {"overlap": 0.0, "by_shift": {}}
    with torch.no_grad():
        crop = lambda r, c: image_to_tensor(np.ascontiguousarray(image[reach + 8 * r:reach + 8 * r + 255,  # noqa: E731
                                                                        reach + 8 * c:reach + 8 * c + 255])).to(device)
        cached = cfnet.backbone(crop(0, 0))
        h = cached.shape[-1]
        centre = (h - size) // 2
        for dr, dc in shifts:
            fresh = cfnet.backbone(crop(dr, dc))
            moved = recentred_features(cached, torch.tensor([[centre + dr, centre + dc]]), size)
            rows = slice(max(-dr, 0), h - max(dr, 0))
            cols = slice(max(-dc, 0), h - max(dc, 0))
            out["overlap"] = max(out["overlap"], float((moved - fresh)[..., rows, cols].abs().max()))
            approx = exemplar(cached, torch.tensor([[centre + dr, centre + dc]]))
            exact = cfnet.cf(fresh)
            out["by_shift"][f"{dr},{dc}"] = float((approx - exact).norm() / exact.norm().clamp_min(1e-12))
    return out

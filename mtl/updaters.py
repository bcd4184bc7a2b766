"""Hand-designed model-update rules for linear-target-model trackers (notebook 02), one interface for all.

A base tracker (:class:`mtl.siamfc.SiamFCTracker`, :class:`mtl.cfnet.CFNetTracker`) holds a *linear
target model* ``tracker.template`` ``(1, C, 6, 6)``: the filter the search features are correlated with.
An **updater** sees the tracker's state and each new frame's result and returns the new target model:

    ``updater.reset(tracker, image, box)``           called at the end of ``tracker.init``
    ``updater.step(tracker, image, box, result)``    -> new template ``(1, C, 6, 6)`` or None (keep it)

Confidence gating (``confidence_threshold``: call the updater only when the peak logit reaches it) and
the update interval (``update_interval``: every k-th frame) are options of the *tracker*, so no updater
repeats them. GradNet, Learning to Update, DiMP and ROAM plug into the same two methods.

The rules here (Learning to Update, Sec. III-C; DiMP Table 3; GradNet Table 1):

* :class:`NoUpdate`: the first frame's template forever (plain SiamFC).
* :class:`EMAUpdater`: ``θ_{t+1} = (1 - α) θ_t + α g(x̄_t)`` (LU eq. 2) with ``g(x̄_t)`` the template
  extracted at the tracked box (SiamFC: the exemplar features; CFNet: the correlation filter).
* :class:`SGDUpdater`: gradient descent on the target model alone (never the backbone), on search
  features stored from past confident frames with pseudo-labels centred at the tracked box; short-term
  when the peak logit is low, long-term every few frames (MDNet's schedule, as LU's baseline).
* :class:`GroundTruthTemplateUpdater`: the template re-extracted at the *ground-truth* box whenever most of the target shows. It cheats (it
  reads the annotation through the runner's ``set_sequence`` hook): an upper bound for any updater
  that only changes the template, not a tracker.

:func:`iterations_to_converge` is the GradNet Table 1 analogue: how many plain gradient-descent steps
the template needs at each learning rate.
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np
import torch

from mtl.eval import TRACKERS, make_tracker, register_tracker
from mtl.losses import balanced_logistic_loss, balanced_weights, siamfc_labels
from mtl.ops import crop_and_resize

#: EMA rate of the registered ``*_ema`` trackers when none is given: UpdateNet's linear-update baseline
#: for SiamFC uses 0.0102; notebook 02 picks its own rate on the validation split.
DEFAULT_EMA_RATE = 0.01


# ---------------------------------------------------------------------------------------------
# The interface and the simple rules
# ---------------------------------------------------------------------------------------------


class Updater:
    """Base class of model-update rules (see the module docstring for the protocol).

    ``step`` receives the tracker (its ``template``, ``template0``, ``frame_index``, ``net``,
    ``extract_template`` ...), the frame ``image`` ``(H, W, 3)`` uint8, the tracked ``box``
    ``[x, y, w, h]`` float64 and the frame's :class:`mtl.siamfc.SearchResult`.
    """

    name = "updater"

    def reset(self, tracker, image: np.ndarray, box: np.ndarray) -> None:
        """Forget everything about the previous sequence (called by ``tracker.init``)."""

    def step(self, tracker, image: np.ndarray, box: np.ndarray, result) -> torch.Tensor | None:
        raise NotImplementedError

    def options(self) -> dict:
        """The updater's settings: its public scalar attributes (not its memory, counters or sequence)."""
        return {k: v for k, v in vars(self).items()
                if not k.startswith("_") and (v is None or isinstance(v, (bool, int, float, str)))}

    def fingerprint(self) -> dict:
        """Class and settings (part of the tracker's results-cache key, :meth:`mtl.tracker.Tracker.fingerprint`)."""
        return {"class": f"{type(self).__module__}.{type(self).__qualname__}", **self.options()}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({fields})"


class NoUpdate(Updater):
    """Keep the first frame's template (SiamFC / CFNet as published)."""

    name = "none"

    def fingerprint(self) -> None:
        """None, as for a tracker without updater: both give the same boxes (and share cached runs)."""
        return None

    def step(self, tracker, image, box, result) -> None:
        return None


class EMAUpdater(Updater):
    """Template averaging, ``θ ← (1 - rate) θ + rate · tracker.extract_template(image, box)`` (LU eq. 2c).

    Costs one exemplar forward pass per updated frame (the candidate template at the tracked box).
    """

    name = "ema"

    def __init__(self, rate: float = DEFAULT_EMA_RATE):
        if not 0 < rate <= 1:
            raise ValueError(f"EMA rate must be in (0, 1], got {rate!r}")
        self.rate = float(rate)

    def step(self, tracker, image, box, result) -> torch.Tensor:
        candidate = tracker.extract_template(image, box)
        return (1 - self.rate) * tracker.template + self.rate * candidate


class GroundTruthTemplateUpdater(Updater):
    """Re-extract the template at the ground-truth box whenever most of the target shows: a REFERENCE that cheats.

    It reads the annotation: the evaluation runner calls ``tracker.set_sequence(seq)`` before a
    sequence when the tracker has that method (:func:`mtl.eval.track_sequence`), and
    :func:`make_updating_tracker` forwards it here. On frames where less than ``min_cover`` of the
    target is visible (``seq.cover``; the visibility flags when a dataset has no cover) it keeps the
    template: there the ground-truth box frames mostly the occluder, and re-extracting would teach
    the template the occluder. ``min_cover = 0.7`` keeps the occluder below 30% of the target's area
    in every template it extracts (notebook 02 compares other fractions on the val split).

    It is *not* an upper bound: it changes only the template, never the tracker's position or scale,
    and the freshest template is not always the one that tracks best (a template from a blurred or
    unusually lit frame can track worse than the first). It shows what a template that follows the
    target's appearance exactly can buy, on the sequences where that is the bottleneck.
    """

    name = "gt_template"

    def __init__(self, min_cover: float = 0.7):
        if not 0 <= min_cover <= 1:
            raise ValueError(f"min_cover must be in [0, 1], got {min_cover!r}")
        self.min_cover = float(min_cover)
        self.sequence = None

    def set_sequence(self, sequence) -> None:
        self.sequence = sequence

    def step(self, tracker, image, box, result) -> torch.Tensor | None:
        seq = self.sequence
        if seq is None:
            raise RuntimeError("GroundTruthTemplateUpdater needs the ground truth: call tracker.set_sequence(seq) "
                               "before tracking (mtl.eval's runners do when the tracker comes from make_updating_tracker)")
        f = tracker.frame_index
        if f >= len(seq):
            raise RuntimeError(f"GroundTruthTemplateUpdater: frame {f} is beyond sequence {seq.name!r} "
                               f"({len(seq)} frames); was set_sequence called with the sequence being tracked?")
        if seq.visible is not None and not seq.visible[f]:
            return None
        cover = getattr(seq, "cover", None)
        if cover is not None and cover[f] < self.min_cover:
            return None
        return tracker.extract_template(image, seq.boxes[f])


# ---------------------------------------------------------------------------------------------
# SGD online fine-tuning of the target model
# ---------------------------------------------------------------------------------------------


def shifted_labels(size: int, offset, radius_cells: float) -> np.ndarray:
    """SiamFC's label map ``(size, size)`` float32 with the positive disc moved by ``offset = [dx, dy]`` cells.

    The offset is rounded to whole cells and clipped so that the disc stays inside the map (the labels
    come from :func:`mtl.losses.siamfc_labels`, rolled, so they are the training labels exactly).
    """
    limit = (size - 1) // 2 - int(math.ceil(radius_cells))
    dx, dy = (int(np.clip(np.rint(v), -limit, limit)) for v in np.asarray(offset, dtype=np.float64).reshape(2))
    return np.roll(siamfc_labels(size, radius_cells), (dy, dx), axis=(0, 1))


def tracked_offset(tracker, result) -> np.ndarray:
    """Where the tracker put the target on a frame, in score-map cells ``[dx, dy]`` from the chosen scale's map centre.

    Image pixels -> search-crop pixels of the chosen scale -> cells (stride 8): the offset of the
    pseudo-label (:func:`shifted_labels`) for a sample made of ``result.features[result.scale_index]``.
    """
    cfg = tracker.config
    crop_side = result.search_size * result.scale_factors[result.scale_index]
    return (result.center - result.search_center) * cfg.instance_size / crop_side / cfg.total_stride


def labelled_sample(tracker, features: torch.Tensor, offset) -> tuple[torch.Tensor, torch.Tensor]:
    """A training sample for a target model: ``(features (1, C, 22, 22) as a normal tensor, labels (17, 17))``.

    The labels are SiamFC's disc moved by ``offset`` cells (:func:`shifted_labels`), on the features' device.
    """
    cfg = tracker.config
    size = features.shape[-1] - tracker.template0.shape[-1] + 1
    labels = shifted_labels(size, offset, cfg.positive_radius / cfg.total_stride)
    return features.clone(), torch.from_numpy(labels).to(features.device)  # clone outside inference mode


def first_frame_sample(tracker, image: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`labelled_sample` of the first frame's search crop, centred on the box (one extra backbone pass at init)."""
    cfg = tracker.config
    crop = crop_and_resize(image, tracker.center, tracker.x_size, cfg.instance_size, pad_value=tracker.pad_color)
    return labelled_sample(tracker, tracker.features(crop[None]), (0.0, 0.0))


def target_model_loss(tracker, template: torch.Tensor, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The tracker's training loss as a function of its target model only.

    ``template`` ``(1, C, h, w)``, ``features`` ``(N, C, H, W)`` stored search features, ``labels``
    ``(N, H-h+1, W-w+1)`` 0/1 -> balanced logistic loss of ``tracker.net.head(template, features)``
    (SiamFC's training loss, :func:`mtl.losses.balanced_logistic_loss`), a scalar tensor.
    """
    scores = tracker.net.head(template, features)
    return balanced_logistic_loss(scores, labels[:, None])


def gradient_descent(loss_fn, template: torch.Tensor, lr: float, iterations: int,
                     momentum: float = 0.0) -> tuple[torch.Tensor, list[float]]:
    """Plain (heavy-ball) gradient descent on a template: ``v ← μ v + ∇f(z)``, ``z ← z - lr v``.

    Gradients come from ``torch.autograd.grad`` with respect to the template alone, so no other tensor
    (network weights included) receives a ``.grad``. Returns ``(template after the steps (detached),
    losses before each step (len = iterations))``.
    """
    z = template.detach().clone().requires_grad_(True)
    velocity = torch.zeros_like(z)
    losses = []
    with torch.enable_grad():
        for _ in range(int(iterations)):
            loss = loss_fn(z)
            (grad,) = torch.autograd.grad(loss, z)
            losses.append(float(loss.detach()))
            velocity = momentum * velocity + grad
            z = (z - lr * velocity).detach().requires_grad_(True)
    return z.detach(), losses


def curvature_bound(tracker, features: torch.Tensor, labels: torch.Tensor) -> float:
    """Upper bound ``L`` on the Hessian of :func:`target_model_loss` w.r.t. the template, at every template.

    ``features`` ``(N, C, H, W)``, ``labels`` ``(N, H-h+1, W-w+1)`` or one ``(H', W')`` map. The logistic
    loss has second derivative ``σ'(s) <= 1/4`` in the logit, and the head is linear in the template
    (``s = J θ + b``), so the Hessian ``Jᵀ diag(w σ') J`` is below ``(1/4) Jᵀ W J`` everywhere: the
    Hessian of the quadratic ``(1/8) Σ w s²``, whose top eigenvalue :func:`largest_curvature` finds.
    Unlike the curvature at one template it never collapses to 0 where the logits saturate.
    """
    if labels.dim() == 2:
        labels = labels.expand(features.shape[0], *labels.shape)
    weights = balanced_weights(labels[:, None]) / features.shape[0]

    def gauss_newton(template: torch.Tensor) -> torch.Tensor:
        return 0.125 * (weights * tracker.net.head(template, features).pow(2)).sum()

    return largest_curvature(gauss_newton, tracker.template0)


class SGDUpdater(Updater):
    """Online fine-tuning of the target model by gradient descent (LU's "SGD-based update", MDNet schedule).

    Memory: the chosen-scale search features ``(1, C, 22, 22)`` of up to ``memory_size`` frames whose
    peak logit is ``>= sample_threshold`` (0: the logistic model says "target" with p > 0.5), each
    with SiamFC's label map centred where the tracker put the target (a pseudo-label); the first frame's
    sample (an extra search-crop forward pass at ``init``) is always kept.

    * **short-term**: when the peak logit is ``< short_term_threshold``, ``iterations_short`` steps on
      the ``short_term_size`` most recent samples;
    * **long-term**: otherwise every ``long_term_interval`` frames, ``iterations_long`` steps on the
      whole memory.

    Each step is gradient descent (momentum ``momentum``) on the balanced logistic loss of the
    tracker's own head over the samples plus ``(weight_decay / 2) ||θ - θ_0||²``, with respect to the
    template alone (:func:`gradient_descent`): the backbone and head weights never change.

    **Units.** With ``relative=True`` (default) ``lr`` and ``weight_decay`` are in units of ``L0``,
    the largest curvature the first frame's loss can have at any template (:func:`curvature_bound`),
    measured in :meth:`reset`: the applied step is ``lr / L0`` (stable below 2 on that frame)
    and the proximal weight ``weight_decay * L0`` (it bounds the condition number by about
    ``1 / weight_decay``). The same numbers then mean the same for SiamFC, whose head scales the
    correlation by 0.004, and for CFNet, whose learned scale makes its curvature ~1e5 times larger;
    absolute units (``relative=False``) reused across the two made CFNet's update diverge.

    The updater must see every frame (it stores samples and decides when to act), so it refuses a
    tracker with ``confidence_threshold`` or ``update_interval > 1``; its own thresholds play that role.
    """

    name = "sgd"

    def __init__(self, lr: float = 0.5, iterations_short: int = 5, iterations_long: int = 10,
                 long_term_interval: int = 10, memory_size: int = 10, short_term_size: int = 3,
                 sample_threshold: float = 0.0, short_term_threshold: float = 0.0, momentum: float = 0.0,
                 weight_decay: float = 0.0, relative: bool = True):
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        for name, v in (("iterations_short", iterations_short), ("iterations_long", iterations_long)):
            if int(v) != v or v < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
        if long_term_interval < 1 or short_term_size < 1:
            raise ValueError("long_term_interval and short_term_size must be >= 1")
        if memory_size < 2:
            raise ValueError(f"memory_size counts the first frame's sample plus recent ones; must be >= 2, got {memory_size}")
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self.iterations_short, self.iterations_long = int(iterations_short), int(iterations_long)
        self.long_term_interval, self.memory_size = int(long_term_interval), int(memory_size)
        self.short_term_size = int(short_term_size)
        self.sample_threshold, self.short_term_threshold = float(sample_threshold), float(short_term_threshold)
        self.relative = bool(relative)
        self._curvature = 1.0  # L0 of the current sequence (1 in absolute units)
        self._first = None
        self._memory: deque = deque(maxlen=self.memory_size - 1)
        self.counts = {"short": 0, "long": 0, "iterations": 0}
        self.updates: list[dict] = []

    # memory ---------------------------------------------------------------------------------

    @property
    def memory(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The stored samples, oldest first: ``[(features (1, C, 22, 22), labels (17, 17))]``."""
        return ([self._first] if self._first is not None else []) + list(self._memory)

    def reset(self, tracker, image, box) -> None:
        if tracker.confidence_threshold is not None or tracker.update_interval != 1:
            raise ValueError("SGDUpdater must see every frame: build the tracker with confidence_threshold=None "
                             "and update_interval=1 (SGDUpdater's own sample_threshold / long_term_interval "
                             "decide what it stores and when it optimises)")
        self._memory = deque(maxlen=self.memory_size - 1)
        self._first = first_frame_sample(tracker, image)
        self.counts = {"short": 0, "long": 0, "iterations": 0}
        self._curvature = 1.0
        if self.relative:
            self._curvature = max(curvature_bound(tracker, *self._first), 1e-30)

    @property
    def curvature(self) -> float:
        """``L0`` of the current sequence (1.0 with ``relative=False``)."""
        return self._curvature

    @property
    def step_size(self) -> float:
        """The applied learning rate: ``lr / L0`` (``lr`` with ``relative=False``)."""
        return self.lr / self._curvature

    def observe(self, tracker, result) -> None:
        """Store the chosen scale's search features of a frame with labels centred at the tracked target."""
        if result.score < self.sample_threshold:
            return
        k = result.scale_index
        self._memory.append(labelled_sample(tracker, result.features[k:k + 1], tracked_offset(tracker, result)))

    # optimisation ---------------------------------------------------------------------------

    def loss_fn(self, tracker, samples):
        """``f(θ)`` over ``samples`` (see the class docstring); returns a callable ``θ -> scalar tensor``.

        The proximal weight is ``weight_decay`` (times ``L0`` when ``relative``).
        """
        features = torch.cat([s[0] for s in samples])
        labels = torch.stack([s[1] for s in samples])
        anchor = tracker.template0.clone()
        mu = self.weight_decay * self._curvature

        def f(template: torch.Tensor) -> torch.Tensor:
            loss = target_model_loss(tracker, template, features, labels)
            if mu:
                loss = loss + 0.5 * mu * (template - anchor).pow(2).sum()
            return loss

        return f

    def optimize(self, tracker, samples, iterations: int) -> torch.Tensor:
        """``iterations`` gradient steps from the current template on ``samples``; the new template.

        Each call appends ``{"frame", "iterations", "loss_before", "loss_after", "norm_ratio", "loss_curve"}``
        to ``self.updates`` (the memory's loss before and after, ``||θ_new|| / ||θ_old||``, the loss before
        each step and after the last; kept across sequences, unlike ``counts``), so a notebook can check
        that updates lower the loss and keep the template bounded, and look at the curve where they do not.
        """
        loss_fn = self.loss_fn(tracker, samples)
        before = tracker.template.clone()
        template, losses = gradient_descent(loss_fn, before, self.step_size, iterations, self.momentum)
        self.counts["iterations"] += int(iterations)
        if losses:
            with torch.no_grad():
                after = float(loss_fn(template))
            self.updates.append({"frame": int(tracker.frame_index), "iterations": int(iterations),
                                 "loss_before": losses[0], "loss_after": after,
                                 "norm_ratio": float(template.norm() / before.norm().clamp_min(1e-30)),
                                 "loss_curve": [float(v) for v in losses] + [after]})
        return template

    def step(self, tracker, image, box, result) -> torch.Tensor | None:
        self.observe(tracker, result)
        samples = self.memory
        if result.score < self.short_term_threshold and self.iterations_short > 0:
            self.counts["short"] += 1
            return self.optimize(tracker, samples[-self.short_term_size:], self.iterations_short)
        if tracker.frame_index % self.long_term_interval == 0 and self.iterations_long > 0:
            self.counts["long"] += 1
            return self.optimize(tracker, samples, self.iterations_long)
        return None


# ---------------------------------------------------------------------------------------------
# Trackers with an updater, and the registry
# ---------------------------------------------------------------------------------------------

UPDATERS = {"none": NoUpdate, "ema": EMAUpdater, "sgd": SGDUpdater, "gt_template": GroundTruthTemplateUpdater}


def make_updater(kind: str, **kwargs) -> Updater:
    """An updater by name: ``"none"``, ``"ema"`` (``rate=``), ``"sgd"`` (see :class:`SGDUpdater`), ``"gt_template"``."""
    if kind not in UPDATERS:
        raise KeyError(f"unknown updater {kind!r}; known: {sorted(UPDATERS)}")
    return UPDATERS[kind](**kwargs)


def make_updating_tracker(base: str = "siamfc", updater: str | Updater = "none", *, name: str | None = None,
                          update_interval: int = 1, confidence_threshold: float | None = None, **kwargs):
    """The base tracker ``base`` (a registered name: ``"siamfc"``, ``"cfnet"``) driven by ``updater``.

    ``updater``: an :class:`Updater` or a name for :func:`make_updater`. Other keywords go to the
    base tracker's factory (``checkpoint=``, ``device=``, tracking options). When the updater reads the
    ground truth (``set_sequence``, the ground-truth template), the tracker gets a ``set_sequence`` method forwarding
    to it, which the evaluation runners call before each sequence.
    """
    if isinstance(updater, str):
        updater = make_updater(updater)
    if base not in TRACKERS:
        make_tracker(base, checkpoint=None)  # imports the module that registers ``base`` (tiny random net)
    tracker = TRACKERS[base](updater=updater, update_interval=update_interval,
                             confidence_threshold=confidence_threshold,
                             name=name or (base if isinstance(updater, NoUpdate) else f"{base}_{updater.name}"),
                             **kwargs)
    if hasattr(updater, "set_sequence"):
        tracker.set_sequence = updater.set_sequence
    return tracker


def _register_updating(base: str) -> None:
    """Register ``<base>_ema``, ``<base>_sgd`` and ``<base>_gt_template`` (``<base>`` itself is no update)."""

    def ema(rate: float = DEFAULT_EMA_RATE, **kwargs):
        return make_updating_tracker(base, EMAUpdater(rate), **kwargs)

    def sgd(sgd_options: dict | None = None, **kwargs):
        return make_updating_tracker(base, SGDUpdater(**(sgd_options or {})), **kwargs)

    def gt_template(min_cover: float = 0.7, **kwargs):
        return make_updating_tracker(base, GroundTruthTemplateUpdater(min_cover), **kwargs)

    for kind, factory in (("ema", ema), ("sgd", sgd), ("gt_template", gt_template)):
        factory.__name__ = f"make_{base}_{kind}_tracker"
        factory.__doc__ = (f"Registry factory ``{base}_{kind}``: :func:`make_updating_tracker` with base "
                           f"``{base!r}`` and the {kind} updater; other keywords go to the base factory.")
        register_tracker(f"{base}_{kind}")(factory)


_register_updating("siamfc")


# ---------------------------------------------------------------------------------------------
# GradNet Table 1 analogue: gradient-descent iterations to converge vs learning rate
# ---------------------------------------------------------------------------------------------


def largest_curvature(loss_fn, template: torch.Tensor, iterations: int = 30, seed: int = 0) -> float:
    """Largest Hessian eigenvalue ``L`` of ``loss_fn`` at ``template`` (power iteration on Hessian-vector products).

    Gradient descent on a function with curvature ``L`` is stable for ``lr < 2 / L`` near that point.
    """
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(template.shape, generator=g).to(template)
    v /= v.norm()
    eig = 0.0
    z = template.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(loss_fn(z), z, create_graph=True)
        for _ in range(iterations):
            (hv,) = torch.autograd.grad(grad, z, grad_outputs=v, retain_graph=True)
            eig = float((hv * v).sum())
            v = hv / (hv.norm() + 1e-30)
    return eig


def converged_minimum(loss_fn, template: torch.Tensor, iterations: int = 300) -> float:
    """A reference minimum of ``loss_fn`` from ``template`` (L-BFGS with a strong-Wolfe line search)."""
    z = template.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([z], lr=1.0, max_iter=iterations, tolerance_grad=1e-12, tolerance_change=1e-14,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn(z)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
        return float(loss_fn(z).detach())


def iterations_to_converge(loss_fn, template: torch.Tensor, lrs, *, f_min: float, tol: float = 0.01,
                           max_iterations: int = 2000) -> list[dict]:
    """Plain gradient descent from ``template`` at each learning rate; count the steps to converge.

    Converged at step ``k`` when ``f(θ_k) - f_min <= tol · (f(θ_0) - f_min)`` (the gap to the minimum
    shrank to ``tol`` of the initial gap). Diverged when the loss becomes non-finite or exceeds
    ``f(θ_0) + 10 (f(θ_0) - f_min)``. Returns one row per lr: ``{"lr", "iterations" (inf when it diverges
    or is not converged after max_iterations), "diverged", "final_gap", "one_step_gap"}`` where
    ``one_step_gap`` is the relative gap left after a single step.
    """
    rows = []
    z0 = template.detach().clone()
    f0 = float(loss_fn(z0).detach())
    gap0 = f0 - f_min
    if not gap0 > 0:
        raise ValueError(f"f_min {f_min} is not below the initial loss {f0}")
    for lr in lrs:
        z = z0.clone().requires_grad_(True)
        iterations, diverged, one_step, gap = math.inf, False, math.nan, 1.0
        with torch.enable_grad():
            for k in range(1, int(max_iterations) + 1):
                (grad,) = torch.autograd.grad(loss_fn(z), z)
                z = (z - lr * grad).detach().requires_grad_(True)
                f = float(loss_fn(z).detach())
                if not math.isfinite(f) or f > f0 + 10 * gap0:
                    diverged = True
                    gap = math.inf
                    break
                gap = (f - f_min) / gap0
                if k == 1:
                    one_step = gap
                if gap <= tol:
                    iterations = k
                    break
        rows.append({"lr": float(lr), "iterations": iterations, "diverged": diverged,
                     "final_gap": gap, "one_step_gap": one_step if not (diverged and k == 1) else math.inf})
    return rows

"""Tests of the model-update rules (mtl.updaters) on a tiny random SiamFC and a synthetic moving square."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mtl.data import Sequence
from mtl.eval import make_tracker, run_ope
from mtl.losses import siamfc_labels
from mtl.siamfc import SiamFCNet, SiamFCTracker
from mtl.updaters import (EMAUpdater, NoUpdate, GroundTruthTemplateUpdater, SGDUpdater, Updater, gradient_descent,
                          iterations_to_converge, largest_curvature, make_updater, make_updating_tracker,
                          shifted_labels, target_model_loss)

H, W = 120, 160


def _square_frame(cx, cy, side=30, shade=230):
    img = np.full((H, W, 3), 40, np.uint8)
    img[::7, :, 1] = 90  # some background texture
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    img[max(y0, 0):y0 + side, max(x0, 0):x0 + side] = (shade, 60, 30)
    img[max(y0, 0):y0 + side // 2, max(x0, 0):x0 + side // 2, 2] = 200
    return img


def _square_sequence(n=7, visible=None):
    centres = [(60 + 4 * t, 55 + 2 * t) for t in range(n)]
    boxes = np.array([[cx - 15, cy - 15, 30, 30] for cx, cy in centres], dtype=np.float64)
    return Sequence("square", boxes, visible=visible,
                    frame_loader=lambda i: _square_frame(*centres[i], shade=230 - 10 * i))


def _tiny_net():
    torch.manual_seed(0)
    return SiamFCNet(width=0.25).eval()


def _tracker(updater, **kw):
    return SiamFCTracker(_tiny_net(), updater=updater, num_scales=1, response_up=4, **kw)


def _track(tracker, seq, frames=None):
    tracker.init(seq.frame(0), seq.boxes[0])
    for f in range(1, frames or len(seq)):
        tracker.update(seq.frame(f))
    return tracker


class Recorder(Updater):
    def __init__(self):
        self.frames = []

    def step(self, tracker, image, box, result):
        self.frames.append(tracker.frame_index)
        return None


# ------------------------------------------------------------------------------------------- rules


def test_no_update_keeps_first_template():
    tracker = _track(_tracker(NoUpdate()), _square_sequence(4))
    torch.testing.assert_close(tracker.template, tracker.template0, rtol=0, atol=0)


def test_ema_formula_hand_case():
    fake = SimpleNamespace(template=torch.full((1, 2, 3, 3), 2.0),
                           extract_template=lambda image, box: torch.full((1, 2, 3, 3), 12.0))
    out = EMAUpdater(0.25).step(fake, None, None, None)
    assert torch.equal(out, torch.full((1, 2, 3, 3), 0.75 * 2.0 + 0.25 * 12.0))  # 4.5 exactly
    with pytest.raises(ValueError):
        EMAUpdater(0.0)
    with pytest.raises(ValueError):
        EMAUpdater(1.5)


def test_ema_on_tracker_mixes_template_with_candidate_at_tracked_box():
    seq = _square_sequence(3)
    tracker = _tracker(EMAUpdater(0.1))
    tracker.init(seq.frame(0), seq.boxes[0])
    t0 = tracker.template.clone()
    image = seq.frame(1)
    box = tracker.update(image)
    expected = 0.9 * t0 + 0.1 * tracker.extract_template(image, box)
    torch.testing.assert_close(tracker.template, expected, rtol=1e-6, atol=1e-6)
    assert not torch.equal(tracker.template, t0)


def test_gt_template_equals_template_at_ground_truth_and_skips_hidden_frames():
    visible = np.array([True, True, True, False, True])
    seq = _square_sequence(5, visible=visible)
    oracle = GroundTruthTemplateUpdater()
    tracker = _tracker(oracle)
    oracle.set_sequence(seq)
    tracker.init(seq.frame(0), seq.boxes[0])
    for f in range(1, 3):
        tracker.update(seq.frame(f))
        torch.testing.assert_close(tracker.template, tracker.extract_template(seq.frame(f), seq.boxes[f]))
    before = tracker.template.clone()
    tracker.update(seq.frame(3))  # target invisible: the oracle keeps the template
    assert torch.equal(tracker.template, before)


def test_gt_template_keeps_the_template_when_most_of_the_target_is_covered():
    seq = _square_sequence(4)
    seq.cover = np.array([1.0, 0.9, 0.5, 0.7])
    ref = GroundTruthTemplateUpdater(min_cover=0.7)
    tracker = _tracker(ref)
    ref.set_sequence(seq)
    tracker.init(seq.frame(0), seq.boxes[0])
    tracker.update(seq.frame(1))
    after_1 = tracker.extract_template(seq.frame(1), seq.boxes[1])
    torch.testing.assert_close(tracker.template, after_1)
    tracker.update(seq.frame(2))  # only half visible: the box frames the occluder, keep the template
    torch.testing.assert_close(tracker.template, after_1)
    tracker.update(seq.frame(3))  # 0.7 visible: re-extract
    torch.testing.assert_close(tracker.template, tracker.extract_template(seq.frame(3), seq.boxes[3]))
    with pytest.raises(ValueError, match="min_cover"):
        GroundTruthTemplateUpdater(min_cover=1.5)


def test_gt_template_without_ground_truth_raises_clearly():
    seq = _square_sequence(2)
    tracker = _tracker(GroundTruthTemplateUpdater())
    tracker.init(seq.frame(0), seq.boxes[0])
    with pytest.raises(RuntimeError, match="set_sequence"):
        tracker.update(seq.frame(1))


def test_gt_template_tracker_from_registry_receives_sequence_from_runner():
    seq = _square_sequence(4)
    tracker = make_tracker("siamfc_gt_template", checkpoint=None, num_scales=1, response_up=4)
    assert tracker.name == "siamfc_gt_template" and hasattr(tracker, "set_sequence")
    runs = run_ope(tracker, [seq], progress=False)
    assert runs["square"]["failed_frames"] == []  # no RuntimeError: the runner passed the ground truth
    torch.testing.assert_close(tracker.template, tracker.extract_template(seq.frame(3), seq.boxes[3]))


def test_registry_names_and_updater_factory():
    for name, kind in [("siamfc_ema", EMAUpdater), ("siamfc_sgd", SGDUpdater), ("siamfc_gt_template", GroundTruthTemplateUpdater)]:
        t = make_tracker(name, checkpoint=None)
        assert isinstance(t.updater, kind) and t.name == name
    assert make_tracker("siamfc_ema", checkpoint=None, rate=0.3).updater.rate == 0.3
    assert make_updating_tracker("siamfc", "none", checkpoint=None).name == "siamfc"
    with pytest.raises(KeyError, match="unknown updater"):
        make_updater("bogus")


# ------------------------------------------------------------------------------- gating and interval


def test_confidence_gating_and_interval_are_respected():
    seq = _square_sequence(7)
    rec = Recorder()
    _track(_tracker(rec, update_interval=3), seq)
    assert rec.frames == [3, 6]
    rec = Recorder()
    _track(_tracker(rec, confidence_threshold=1e9), seq)
    assert rec.frames == []
    rec = Recorder()
    _track(_tracker(rec, confidence_threshold=-1e9), seq)
    assert rec.frames == [1, 2, 3, 4, 5, 6]


# --------------------------------------------------------------------------------------------- SGD


def test_shifted_labels_move_the_disc_and_clip():
    base = siamfc_labels(17, 2.0)
    assert np.array_equal(shifted_labels(17, (0, 0), 2.0), base)
    moved = shifted_labels(17, (1.2, -2.4), 2.0)  # rounds to dx=1, dy=-2
    assert moved.sum() == base.sum()
    assert moved[8 - 2, 8 + 1] == 1 and moved[8, 8] == 0
    far = shifted_labels(17, (40, 0), 2.0)  # clipped to 6 cells: the disc touches the edge, never wraps
    assert far.sum() == base.sum() and far[8, 14] == 1 and far[8, 16] == 1 and far[:, :12].sum() == 0


def test_sgd_reduces_loss_on_memory_and_never_touches_network():
    seq = _square_sequence(6)
    sgd = SGDUpdater(lr=50.0, iterations_short=2, iterations_long=5, long_term_interval=2, memory_size=4,
                     sample_threshold=-1e9, short_term_threshold=-1e9, relative=False)
    tracker = _tracker(sgd)
    params = {k: v.detach().clone() for k, v in tracker.net.state_dict().items()}
    flags = {k: p.requires_grad for k, p in tracker.net.named_parameters()}
    tracker.init(seq.frame(0), seq.boxes[0])
    assert len(sgd.memory) == 1  # the first frame's sample
    for f in range(1, 4):
        tracker.update(seq.frame(f))
    assert len(sgd.memory) == 4 and sgd.counts["long"] == 1  # frame 2 of 1..3 ran the long-term update
    # the loss of the stored samples falls under the updater's own optimisation
    samples = sgd.memory
    f = sgd.loss_fn(tracker, samples)
    before = float(f(tracker.template.clone()))
    after = float(f(sgd.optimize(tracker, samples, 5)))
    assert after < before
    # memory is bounded, the first sample stays
    first = sgd.memory[0][0].clone()
    for f_ in range(4, 6):
        tracker.update(seq.frame(f_))
    assert len(sgd.memory) == 4 and torch.equal(sgd.memory[0][0], first)
    # the backbone and head never change and never get gradients
    for k, v in tracker.net.state_dict().items():
        assert torch.equal(v, params[k]), k
    for k, p in tracker.net.named_parameters():
        assert p.requires_grad == flags[k] and p.grad is None, k


def test_sgd_relative_step_keeps_templates_bounded_at_any_head_scale():
    """lr in units of the first frame's curvature: one setting is stable for SiamFC-like (tiny) and
    CFNet-like (large) head scales; the same absolute step blows the large-scale template up."""
    seq = _square_sequence(6)
    norms = {}
    for scale in (1e-3, 1e2):
        for relative, lr in ((True, 0.5), (False, 0.5 / 1e-3)):
            sgd = SGDUpdater(lr=lr, iterations_short=0, iterations_long=20, long_term_interval=2,
                             sample_threshold=-1e9, relative=relative)
            tracker = _tracker(sgd)
            tracker.net.head.out_scale = scale
            tracker.init(seq.frame(0), seq.boxes[0])
            before = float(tracker.template.norm())
            for f in range(1, 5):
                tracker.update(seq.frame(f))
            norms[scale, relative] = float(tracker.template.norm()) / before
            if relative:
                assert sgd.step_size == pytest.approx(0.5 / sgd.curvature)
                assert sgd.curvature > 0
    for scale in (1e-3, 1e2):
        assert 0.5 <= norms[scale, True] <= 2.0, norms
    assert not 0.5 <= norms[1e2, False] <= 2.0, norms  # the absolute step tuned elsewhere diverges


def test_curvature_bound_is_above_the_hessian_everywhere_and_tight_near_zero_logits():
    from mtl.updaters import curvature_bound, largest_curvature

    torch.manual_seed(0)
    tracker = SimpleNamespace(net=SimpleNamespace(head=lambda z, x: torch.nn.functional.conv2d(x, z) * 0.1),
                              template0=torch.zeros(1, 3, 2, 2, dtype=torch.float64))
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    labels = torch.from_numpy(np.stack([shifted_labels(4, (0, 0), 1.0), shifted_labels(4, (1, 0), 1.0)])).double()
    bound = curvature_bound(tracker, x, labels)
    f = lambda t: target_model_loss(tracker, t, x, labels)  # noqa: E731
    for scale in (0.0, 0.3, 3.0):
        z = scale * torch.randn(1, 3, 2, 2, dtype=torch.float64)
        assert largest_curvature(f, z, iterations=100) <= bound * (1 + 1e-6)
    # at zero logits sigma' = 1/4 exactly, so the bound is the Hessian there
    assert largest_curvature(f, tracker.template0, iterations=200) == pytest.approx(bound, rel=1e-4)


def test_sgd_short_term_on_low_confidence_and_refuses_gating():
    seq = _square_sequence(4)
    sgd = SGDUpdater(iterations_short=1, iterations_long=1, long_term_interval=100, short_term_threshold=1e9)
    _track(_tracker(sgd), seq)
    assert sgd.counts == {"short": 3, "long": 0, "iterations": 3}
    with pytest.raises(ValueError, match="every frame"):
        _tracker(SGDUpdater(), confidence_threshold=0.0).init(seq.frame(0), seq.boxes[0])
    with pytest.raises(ValueError):
        SGDUpdater(memory_size=1)


def test_target_model_loss_gradient_matches_finite_differences():
    torch.manual_seed(1)
    tracker = SimpleNamespace(net=SimpleNamespace(head=lambda z, x: torch.nn.functional.conv2d(x, z) * 0.1))
    z = torch.randn(1, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    labels = torch.from_numpy(np.stack([shifted_labels(4, (0, 0), 1.0), shifted_labels(4, (1, 0), 1.0)])).double()
    assert torch.autograd.gradcheck(lambda t: target_model_loss(tracker, t, x, labels), (z,))


# ------------------------------------------------------------------------ GradNet Table 1 machinery


def test_gradient_descent_and_iterations_to_converge_on_a_quadratic():
    a = torch.tensor([4.0, 1.0, 0.5], dtype=torch.float64)

    def f(z):
        return 0.5 * (a * z.reshape(-1) ** 2).sum()

    z0 = torch.ones(1, 3, 1, 1, dtype=torch.float64)
    assert largest_curvature(f, z0, iterations=50) == pytest.approx(4.0, rel=1e-6)
    z, losses = gradient_descent(f, z0, lr=0.25, iterations=3)
    assert losses[0] == pytest.approx(2.75) and z[0, 0, 0, 0] == 0  # lr = 1/a_max zeroes that coordinate
    rows = iterations_to_converge(f, z0, [0.1, 0.25, 0.6], f_min=0.0, tol=0.01, max_iterations=500)
    # the slow coordinate (a = 0.5) decays as (1 - 0.5 lr)^(2k) and dominates the remaining gap
    gaps = lambda k, lr: float(f(z0 * (1 - a * lr).reshape(1, 3, 1, 1) ** k)) / 2.75
    for row in rows[:2]:
        k = row["iterations"]
        assert gaps(k, row["lr"]) <= 0.01 < gaps(k - 1, row["lr"])
        assert row["one_step_gap"] > 0.01 and not row["diverged"]
    assert rows[2]["diverged"] and math.isinf(rows[2]["iterations"])  # 0.6 > 2 / 4
    with pytest.raises(ValueError):
        iterations_to_converge(f, z0, [0.1], f_min=10.0)

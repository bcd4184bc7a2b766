"""ROAM's parts (mtl.roam): the resizable model, the coordinate-wise optimizer, the loss, the self-checks."""
import math

import pytest
import torch

from mtl.roam import (CoordinateLSTM, ThetaLayout, draw_rfs, filter_shape, filter_size, preprocess_gradient,
                      resize_filter, response, response_label, response_loss)
from mtl.roam import checks


def test_filter_size_rule_by_hand():
    # ceil(1.5 x) made odd by dropping its parity and adding one
    assert [filter_size(x) for x in (1.0, 2.0, 4.8, 5.4, 6.0)] == [3, 3, 9, 9, 9]
    assert filter_size(6.1) == 11
    assert filter_shape((9.6, 2.4)) == (5, 15)  # (rows from h, cols from w)
    with pytest.raises(ValueError, match="positive"):
        filter_size(0.0)


def test_resize_checks_pass():
    r = checks.resize_checks()
    assert r["canonical_error"] == 0.0 and r["interpolate_error"] < 1e-12 and r["gradcheck"]
    assert r["all_odd"] and r["square_is_canonical"] and r["anchors_cover_target"]


def test_resize_keeps_corner_taps():
    f = torch.randn(2, 3, 9, 9)
    g = resize_filter(f, (5, 13))
    assert g.shape == (2, 3, 5, 13)
    for (r, c), (r2, c2) in (((0, 0), (0, 0)), ((0, 8), (0, 12)), ((8, 0), (4, 0)), ((8, 8), (4, 12))):
        torch.testing.assert_close(g[..., r2, c2], f[..., r, c])


def test_layout_round_trips_and_shares_storage():
    layout = ThetaLayout.for_model(64, 8, 9)
    assert layout.numel == 8 * 64 + 8 + 8 * 81 + 1 == 1169  # the spec's response-branch size
    theta = layout.initial(torch.Generator().manual_seed(0))
    flat = layout.flatten(theta)
    back = layout.unflatten(flat)
    for k in theta:
        torch.testing.assert_close(back[k], theta[k])
    flat2 = flat.clone().requires_grad_(True)
    layout.unflatten(flat2)["filter"].sum().backward()
    assert flat2.grad.sum() == 8 * 81
    with pytest.raises(ValueError, match="coordinates"):
        layout.unflatten(flat[:-1])


def test_response_shape_and_centre_of_a_delta():
    layout = ThetaLayout.for_model(4, 2, 9)
    theta = {k: torch.zeros(s) for k, s in layout.shapes}
    theta["w1"][0, 0] = 1.0
    theta["filter"][0, 0, 4, 4] = 1.0  # the centre tap
    x = torch.zeros(1, 4, 14, 14)
    x[0, 0, 6, 9] = 1.0
    for shape in ((9, 9), (5, 13), (13, 5)):
        s = response(theta, x, shape)
        assert s.shape == (1, 14, 14)
        assert divmod(int(s.argmax()), 14) == (6, 9)  # an odd filter's centre tap stays centred when warped


def test_label_peaks_at_the_box_centre_and_follows_its_width():
    boxes = torch.tensor([[4.0, 5.0, 4.0, 2.0]])  # centre (6, 6) in cells
    m = response_label(boxes, 14)[0]
    assert m[6, 6] == 1.0 and divmod(int(m.argmax()), 14) == (6, 6)
    # one cell right is 1/4 of the width, one cell down 1/2 of the height: exp(-20/16) and exp(-20/4)
    assert math.isclose(float(m[6, 7]), math.exp(-20 / 16), rel_tol=1e-6)
    assert math.isclose(float(m[7, 6]), math.exp(-20 / 4), rel_tol=1e-6)


def test_response_loss_by_hand():
    labels = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    scores = torch.tensor([[[0.5, 0.05], [0.2, 0.0]]])
    # kept: |err| >= 0.1 at (0,0) (err -0.5, weight e) and (1,0) (err 0.2, weight 1); count 2
    expected = (math.e * 0.25 + 0.04) / 3
    assert math.isclose(float(response_loss(scores, labels)), expected, rel_tol=1e-6)
    assert float(response_loss(labels, labels)) == 0.0


def test_gradient_preprocessing_is_continuous_and_keeps_the_sign():
    r = checks.preprocessing_checks()
    assert r["jump_at_threshold"] < 1e-6 and r["sign_kept"]
    out = preprocess_gradient(torch.tensor([1.0, -1e-20, 0.0]))
    torch.testing.assert_close(out, torch.tensor([[0.0, 1.0], [-1.0, -1e-20 * math.exp(10)], [-1.0, 0.0]]))


def test_lstm_rates_stay_in_range_and_start_at_the_init_fraction():
    lstm = CoordinateLSTM(lambda_max=2.0, init_fraction=0.1)
    lam, state = lstm(torch.randn(50, 5))
    torch.testing.assert_close(lam, torch.full((50,), 0.2))
    assert len(state) == 2 and state[0][0].shape == (50, 20)
    with torch.no_grad():
        lstm.out.weight.normal_(0, 10)
    lam, _ = lstm(torch.randn(50, 5) * 100, state)
    assert (lam > 0).all() and (lam < 2.0).all()
    with pytest.raises(ValueError):
        CoordinateLSTM(lambda_max=0.0)


def test_roam_step_with_a_constant_output_is_sgd_and_rfs_moves_theta_by_eps_squared():
    r = checks.sgd_equivalence()
    assert r["rates_constant"] == 0.0 and r["roam_vs_sgd"] < 1e-12
    assert r["rfs_step_size"] > 1e-4 and r["rfs_step_error"] < 1e-10


def test_rfs_draws_are_in_range_and_kappa_zero_is_no_scaling():
    e = draw_rfs(10_000, 1.6, torch.Generator().manual_seed(0))
    assert e.min() >= math.exp(-1.6) and e.max() <= math.exp(1.6) and e.log().std() > 0.8
    assert (draw_rfs(10, 0.0) == 1).all()
    with pytest.raises(ValueError):
        draw_rfs(3, -1.0)


def test_second_order_first_step_matches_finite_differences():
    r = checks.first_step_gradients()
    for k in ("theta0", "lambda0"):
        a, fd = r[k]["autograd"], r[k]["finite_difference"]
        assert abs(a) > 1e-6 and abs(a - fd) <= 1e-5 * max(1.0, abs(a)), (k, a, fd)


def test_rfs_toy_spreads_the_learned_rates():
    r = checks.rfs_toy(steps=150, coordinates=256)
    assert r["with RFS"]["rate_spread"] > 3 * r["without RFS"]["rate_spread"]


# ---- the clip bank ------------------------------------------------------------------------------------------------

def test_stretched_crop_puts_the_box_where_its_cells_say():
    import numpy as np

    from mtl.dimp.data import CropGeometry
    from mtl.ops import crop_and_resize

    geo = CropGeometry()
    img = np.zeros((300, 400, 3), np.uint8)
    box = np.array([150.0, 100.0, 60.0, 40.0])
    img[100:140, 150:210] = 255
    center = np.array([185.0, 125.0])  # off the box centre (179.5, 119.5)
    for stretch in (0.8, 1.0, 1.25):
        side = geo.crop_side(box[2:])
        crop = crop_and_resize(img, center, side, geo.crop_size, stretch=stretch)
        x, y, w, h = geo.box_to_cells(box, center, side, stretch) * geo.stride
        x, y = x + geo.first_cell_pixel, y + geo.first_cell_pixel  # crop pixels
        on = np.argwhere(crop[..., 0] > 127)
        assert abs(on[:, 1].min() - (x + 0.5)) <= 1 and abs(on[:, 1].max() - (x + w - 0.5)) <= 1
        assert abs(on[:, 0].min() - (y + 0.5)) <= 1 and abs(on[:, 0].max() - (y + h - 0.5)) <= 1
        assert abs(w / h - 1.5 * stretch ** 2) < 1e-9  # the stretch changes the aspect by r^2
    with pytest.raises(ValueError, match="stretch"):
        crop_and_resize(img, center, 50.0, 64, stretch=0.0)


def test_clip_starts_need_a_visible_run():
    import numpy as np

    from mtl.data import Sequence
    from mtl.roam.data import clip_starts

    vis = np.ones(12, bool)
    vis[5] = False
    seq = Sequence(name="s", boxes=np.tile([1.0, 1, 3, 3], (12, 1)), visible=vis)
    np.testing.assert_array_equal(clip_starts(seq, 4), [0, 1, 6, 7, 8])
    assert len(clip_starts(seq, 13)) == 0


def test_clip_features_shapes_and_first_copies():
    from mtl.backbones import AlexNetV1
    from mtl.data import load_dataset
    from mtl.roam.data import FIRST_COPIES, ClipRecipe, clip_features

    seqs = load_dataset("synth:val", quick=True, seed=0)
    recipe = ClipRecipe(frames=6)
    torch.manual_seed(0)
    out = clip_features(AlexNetV1(width=0.25), seqs, num_clips=2, recipe=recipe, seed=0, progress=False)
    assert out["features"].shape[:2] == (2, recipe.crops_per_clip) == (2, len(FIRST_COPIES) + 5)
    assert out["features"].dtype == torch.float16 and out["boxes"].shape == (2, 14, 4)
    b = out["boxes"][0]
    # copy (1, 1) is centred and keeps the aspect; (1.2, 1) widens it by 1.2^2; (1, 1.2) enlarges it by 1.2
    centre = b[:, :2] + b[:, 2:] / 2
    torch.testing.assert_close(centre[0], torch.full((2,), 6.5), atol=0.07, rtol=0)
    torch.testing.assert_close((b[6, 2] / b[6, 3]) / (b[0, 2] / b[0, 3]), torch.tensor(1.44), atol=1e-4, rtol=0)
    torch.testing.assert_close(b[2, 2] / b[0, 2], torch.tensor(1.2), atol=1e-4, rtol=0)


# ---- meta-training --------------------------------------------------------------------------------------------

def _tiny_learner(optimizer="lstm", **changes):
    from mtl.roam.meta import ROAMConfig, ROAMLearner

    cfg = ROAMConfig(tau=2, updates=2, reduced=2, k0=5, optimizer=optimizer, lambda_max=2.0, lambda0=0.5,
                     theta0_scale=1.0, **changes)
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 9 + 6, 4, 10, 10, generator=g)
    boxes = torch.tensor([3.0, 3.0, 3.0, 3.0]).repeat(2, 15, 1) + torch.rand(2, 15, 4, generator=g)
    return ROAMLearner(4, cfg), features, boxes


def test_unroll_gradient_paths():
    """theta_0 / lambda_0 learn only through the first meta-loss; the LSTM through every later one."""
    learner, features, boxes = _tiny_learner()
    learner.train()
    out = learner.unroll(features, boxes, torch.Generator().manual_seed(0))
    assert out["meta"].shape == (3,) and out["update"].shape == (3,) and out["rates"].shape == (2,)
    later = torch.autograd.grad(out["meta"][1:].sum(), [learner.theta0, learner.log_lambda0], allow_unused=True,
                                retain_graph=True)
    assert all(g is None or float(g.abs().max()) == 0.0 for g in later)
    first = torch.autograd.grad(out["meta"][0], [learner.theta0, learner.log_lambda0], retain_graph=True)
    assert all(float(g.abs().max()) > 0 for g in first)
    lstm_params = list(learner.lstm.parameters())
    for k in (1, 2):
        grads = torch.autograd.grad(out["meta"][k], lstm_params, retain_graph=True, allow_unused=True)
        assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0, k
    first_to_lstm = torch.autograd.grad(out["meta"][0], lstm_params, allow_unused=True, retain_graph=True)
    assert all(g is None or float(g.abs().max()) == 0.0 for g in first_to_lstm)


def test_sgd_and_const_optimizers_unroll_and_const_learns_its_rates():
    for opt in ("sgd", "const"):
        learner, features, boxes = _tiny_learner(opt)
        learner.train()
        out = learner.unroll(features, boxes, torch.Generator().manual_seed(0))
        assert torch.isfinite(out["meta"]).all()
        if opt == "sgd":
            assert float(out["rates"][0]) == pytest.approx(learner.config.sgd_lr)
            assert learner.meta_parameters()["optimizer"] == []
        else:
            (g,) = torch.autograd.grad(out["meta"][1:].sum(), [learner.log_const])
            assert float(g.abs().max()) > 0


def test_config_refuses_bad_settings():
    from mtl.roam.meta import ROAMConfig

    with pytest.raises(ValueError, match="optimizer"):
        ROAMConfig(optimizer="adam")
    with pytest.raises(ValueError, match="odd"):
        ROAMConfig(k0=8)
    with pytest.raises(ValueError, match="positive"):
        ROAMConfig(lambda_max=0.0)


def test_meta_training_steps_lower_the_meta_loss():
    from mtl.roam.train import ROAMStep

    learner, features, boxes = _tiny_learner()
    step = ROAMStep(0)
    learner.eval()
    before = float(step(learner, (features, boxes))["loss"])
    learner.train()
    opt = torch.optim.Adam([p for ps in learner.meta_parameters().values() for p in ps], lr=1e-2)
    for _ in range(30):
        loss = step(learner, (features, boxes))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    learner.eval()
    after = float(step(learner, (features, boxes))["loss"])
    assert after < 0.8 * before, (before, after)


# ---- the tracker ----------------------------------------------------------------------------------------------

def _roam_tracker(**options):
    from mtl.backbones import AlexNetV1
    from mtl.roam.meta import ROAMConfig, ROAMLearner
    from mtl.roam.tracker import ROAMTracker

    torch.manual_seed(0)
    backbone = AlexNetV1(width=0.25)
    learner = ROAMLearner(backbone.out_channels, ROAMConfig(lambda_max=0.1, lambda0=0.01))
    return ROAMTracker(learner, backbone, **options)


def _moving_square(n=12, size=(160, 200)):
    import numpy as np

    g = np.random.default_rng(0)
    bg = (g.random((*size, 3)) * 255).astype(np.uint8)
    frames = []
    for i in range(n):
        f = bg.copy()
        f[60:90, 50 + 3 * i:90 + 3 * i] = (255, 255, 0)
        frames.append(f)
    return frames, np.array([50.0, 60.0, 40.0, 30.0])


def test_untrained_roam_tracker_runs_repeats_and_updates_every_tau_frames():
    import numpy as np

    from mtl import eval as ev

    frames, box = _moving_square()
    runs, logs = [], []
    for _ in range(2):
        trk = _roam_tracker(tau=5, gate=0.0)  # every frame stored
        runs.append(ev.track_frames(trk, frames, box))
        logs.append(trk.update_log())
    assert not runs[0]["failed_frames"] and runs[0]["boxes"].shape == (12, 4)
    np.testing.assert_array_equal(runs[0]["boxes"], runs[1]["boxes"])
    assert [e["frame"] for e in logs[0]] == [5, 10] and all(len(e["rates"]) == 2 for e in logs[0])


def test_roam_without_update_keeps_the_first_model():
    from mtl import eval as ev

    frames, box = _moving_square(8)
    trk = _roam_tracker(update="none")
    ev.track_frames(trk, frames[:1], box)
    theta = trk.theta.clone()
    ev.track_frames(trk, frames, box)
    torch.testing.assert_close(trk.theta, theta)
    assert trk.update_log() == []


def test_roam_tracking_options_are_checked():
    from mtl.roam.tracker import ROAMTracking

    with pytest.raises(TypeError, match="unknown ROAM tracking options"):
        _roam_tracker(tua=5)
    with pytest.raises(ValueError, match="update must be"):
        ROAMTracking(update="sometimes")
    with pytest.raises(ValueError, match="buffer"):
        ROAMTracking(buffer=1, steps=2)


def test_one_layer_model_first_step_from_zero_is_a_template():
    """With no 1x1 conv and theta_0 = 0, one gradient step makes the filter a label-weighted sum of feature
    windows: the response of a frame to itself peaks on the target, whatever the rate."""
    layout = ThetaLayout.for_model(4, 0, 5)
    assert [n for n, _ in layout.shapes] == ["filter", "b2"] and layout.numel == 4 * 25 + 1
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 14, 14, generator=g)
    x[0, :, 6, 9] += 6.0  # a distinct target at (row 6, col 9)
    boxes = torch.tensor([[8.0, 5.0, 2.0, 2.0]])  # centred on (9, 6)
    theta = torch.zeros(layout.numel, requires_grad=True)
    loss = response_loss(response(layout.unflatten(theta), x, (5, 5)), response_label(boxes, 14), margin=0.0)
    (grad,) = torch.autograd.grad(loss, theta)
    for lr in (0.01, 1.0):
        s = response(layout.unflatten(-lr * grad), x, (5, 5))[0]
        assert divmod(int(s.argmax()), 14) == (6, 9)
    with pytest.raises(ValueError, match="reduced"):
        ThetaLayout.for_model(4, -1, 5)


# ---- ROAM++: the regression branch -----------------------------------------------------------------------------

def test_regression_layout_deltas_and_anchors():
    from mtl.roam.model import anchor_boxes, decode_deltas, encode_deltas, regression

    layout = ThetaLayout.for_model(6, 0, 5, regression=True, reg_reduced=3)
    assert [n for n, _ in layout.shapes] == ["filter", "b2", "reg_w1", "reg_b1", "reg_filter", "reg_b2"]
    assert layout.has_regression and int(layout.mask("reg_").sum()) == 6 * 3 + 3 + 4 * 3 * 25 + 4
    theta = layout.unflatten(layout.flatten(layout.initial(torch.Generator().manual_seed(0))))
    assert regression(theta, torch.randn(2, 6, 10, 10), (5, 7)).shape == (2, 4, 10, 10)
    anchors = anchor_boxes(4, (9, 6), rho=1.5)  # (rows, cols): anchors of 4 x 6 cells
    assert anchors.shape == (16, 4) and anchors[5].tolist() == [1.0, 1.0, 4.0, 6.0]
    boxes = torch.tensor([[0.5, -1.0, 3.0, 7.0]]).expand(16, 4)
    d = encode_deltas(anchors, boxes)
    torch.testing.assert_close(decode_deltas(anchors, d), boxes)
    # by hand for anchor 5 (centre (1, 1), 4 x 6): the box's centre (2, 2.5), size 3 x 7
    torch.testing.assert_close(d[5], torch.tensor([0.25, 0.25, math.log(3 / 4), math.log(7 / 6)]))


def test_regression_loss_is_zero_at_the_target_and_uses_the_top_anchors():
    from mtl.roam.loss import regression_loss
    from mtl.roam.model import anchor_boxes, encode_deltas

    anchors = anchor_boxes(6, (5, 5), rho=1.5)
    boxes = torch.tensor([[1.0, 1.5, 3.0, 3.5]])
    exact = encode_deltas(anchors, boxes).T.reshape(1, 4, 6, 6)
    assert float(regression_loss(exact, boxes, anchors, top=4)) == 0.0
    # a wrong prediction far from the box (corner cell, IoU 0) is not among the top anchors: no loss
    far = exact.clone()
    far[0, :, 5, 5] += 3.0
    assert float(regression_loss(far, boxes, anchors, top=4)) == 0.0
    # at the best anchor a delta off by 0.5: smooth-L1 0.5 * 0.5^2 = 0.125, averaged over 4 anchors x 4 deltas
    near = exact.clone()
    near[0, 0, 3, 2] += 0.5  # row 3, col 2: the anchor at (2, 3), one of the 4 nearest the box centre (2.5, 3.25)
    assert float(regression_loss(near, boxes, anchors, top=4)) == pytest.approx(0.125 / 16)


def test_roampp_learner_unrolls_and_rfs_uses_each_branchs_range():
    from mtl.roam.meta import ROAMConfig, ROAMLearner

    cfg = ROAMConfig(tau=2, updates=2, k0=5, regression=True, reg_reduced=2, kappa=1.6, kappa_reg=0.0)
    learner = ROAMLearner(4, cfg)
    eps = learner.draw_scales(torch.Generator().manual_seed(0))
    reg = learner.layout.mask("reg_")
    assert bool((eps[reg] == 1).all()) and float(eps[~reg].std()) > 0.3
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 9 + 6, 4, 10, 10, generator=g)
    boxes = torch.tensor([3.0, 3.0, 3.0, 3.0]).repeat(2, 15, 1) + torch.rand(2, 15, 4, generator=g)
    learner.train()
    out = learner.unroll(features, boxes, g)
    (grad,) = torch.autograd.grad(out["meta"][0], [learner.theta0])
    assert float(grad[reg].abs().max()) > 0  # the regression loss reaches theta_0's regression coordinates


def _roampp_tracker(**options):
    from mtl.backbones import AlexNetV1
    from mtl.roam.meta import ROAMConfig, ROAMLearner
    from mtl.roam.tracker import ROAMTracker

    torch.manual_seed(0)
    backbone = AlexNetV1(width=0.25)
    learner = ROAMLearner(backbone.out_channels, ROAMConfig(regression=True, lambda_max=0.1, lambda0=0.01))
    return ROAMTracker(learner, backbone, **options)


def test_roampp_tracker_regresses_boxes_and_sgd_option_uses_its_rate():
    import numpy as np

    from mtl import eval as ev

    frames, box = _moving_square()
    trk = _roampp_tracker(gate=0.0, optimizer="sgd", sgd_lr=0.003)
    assert trk.box_mode == "regression"
    run = ev.track_frames(trk, frames, box)
    assert run["boxes"].shape == (12, 4) and np.isfinite(run["boxes"]).all() and (run["boxes"][:, 2:] >= 10).all()
    assert np.allclose([e["rates"] for e in trk.update_log()], [[0.003, 0.003]] * 2)
    with pytest.raises(ValueError, match="regression branch"):
        _roam_tracker(box="regression")
    with pytest.raises(ValueError, match="optimizer must be"):
        _roam_tracker(optimizer="adam")


def test_oracle_tracker_needs_the_sequence_and_labels_samples_with_the_ground_truth():
    import numpy as np

    from mtl import eval as ev
    from mtl.data import Sequence
    from mtl.roam.tracker import ROAMOracleTracker

    frames, box = _moving_square(8)
    base = _roam_tracker(gate=0.0)
    oracle = ROAMOracleTracker(base.learner, base.backbone, gate=0.0)
    with pytest.raises(RuntimeError, match="oracle"):
        oracle.init(frames[0], box)
    gt = np.array([box + [3.0 * i, 0, 2.0 * i, 0] for i in range(8)])  # widening: the tracker's boxes keep their aspect
    visible = np.ones(8, bool)
    visible[3] = False
    oracle.set_sequence(Sequence("square", gt, visible=visible))
    ev.track_frames(oracle, frames, box)
    geo = oracle.geometry
    stored = [s[1].numpy() for s in oracle.samples]
    assert len(stored) == 6  # frames 1..7 but the invisible frame 3
    # the last sample's label is frame 7's ground truth in its crop's cells: its aspect ratio, not the tracked box's
    np.testing.assert_allclose(stored[-1][2] / stored[-1][3], gt[7, 2] / gt[7, 3], rtol=1e-4)
    assert abs(oracle.size[0] / oracle.size[1] - gt[7, 2] / gt[7, 3]) > 0.1
    assert geo.map_size == 14


def test_roam_and_roampp_are_registered():
    from mtl.eval import make_tracker

    for name, mode in (("roam", "scales"), ("roampp", "regression")):
        trk = make_tracker(name, checkpoint=None, update="none")
        assert trk.name == name and trk.box_mode == mode and trk.params.update == "none"


def test_registered_models_use_the_rates_notebook_06_calibrated_on_val():
    """`mtl benchmark --tracker roam` must load the model of the notebook's rows: its config's rates are the
    committed val calibration, and the stored config is the default one."""
    import dataclasses
    import json
    from pathlib import Path

    from mtl.roam.meta import ROAMConfig
    from mtl.roam.train import calibrated_config

    path = Path(__file__).resolve().parents[1] / "results" / "06_roam.json"
    if not path.is_file():
        pytest.skip("no full-mode results of notebook 06")
    results = json.loads(path.read_text())
    assert calibrated_config(ROAMConfig(), results["calibration"]["best"]) == ROAMConfig()
    assert results["config"] == dataclasses.asdict(ROAMConfig())

"""DiMP's parts (mtl.dimp): filter ops, loss maps, the Gauss-Newton optimizer, ROI pooling, initializer."""
import math

import numpy as np
import pytest
import torch

from mtl.dimp import (ClassificationFeatures, FilterInitializer, FixedHingeMaps, GradientDescent, InstanceL2Norm,
                      LearnedLossMaps, RadialBasis, SteepestDescent, apply_filter, apply_filter_transpose,
                      distance_map, hinge_mse, nominal_label_sigma, roi_pool)
from mtl.dimp import checks


# ---- filter ops ---------------------------------------------------------------------------------------

def test_apply_filter_matches_a_per_sequence_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 7, 7, generator=g)
    f = torch.randn(2, 4, 3, 3, generator=g)
    s = apply_filter(x, f)
    assert s.shape == (2, 3, 7, 7)
    for b in range(2):
        ref = torch.nn.functional.conv2d(x[b], f[b:b + 1], padding=1)[:, 0]
        torch.testing.assert_close(s[b], ref)


def test_transpose_is_the_adjoint_of_apply_filter():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 4, 9, 9, generator=g, dtype=torch.float64)
    f = torch.randn(2, 4, 5, 5, generator=g, dtype=torch.float64)
    a = torch.randn(2, 3, 9, 9, generator=g, dtype=torch.float64)
    lhs = (apply_filter(x, f) * a).sum()
    rhs = (f * apply_filter_transpose(x, a, 5)).sum()
    assert abs(float(lhs - rhs)) < 1e-10 * abs(float(lhs))


def test_even_filter_and_bad_shapes_raise():
    x = torch.zeros(1, 2, 3, 8, 8)
    with pytest.raises(ValueError, match="odd"):
        apply_filter(x, torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, n, C, H, W\)"):
        apply_filter(x[0], torch.zeros(1, 3, 3, 3))
    with pytest.raises(ValueError, match="filter must be"):
        apply_filter(x, torch.zeros(2, 3, 3, 3))
    with pytest.raises(ValueError, match="activation must be"):
        apply_filter_transpose(x, torch.zeros(1, 2, 7, 7), 3)


# ---- the self-checks of notebook 05 --------------------------------------------------------------------

def test_closed_form_gradient_equals_autograd():
    assert checks.closed_form_gradient_error() < 1e-10


def test_jg_equals_a_jacobian_vector_product():
    assert checks.jacobian_vector_error() < 1e-10


def test_gauss_newton_step_is_the_exact_line_search_for_least_squares():
    r = checks.least_squares_line_search()
    assert abs(r["alpha_gn"] - r["alpha_exact"]) < 1e-10 * r["alpha_exact"]
    assert abs(r["alpha_grid"] - r["alpha_gn"]) <= r["grid_step"]
    assert r["parabola_error"] < 1e-10


def test_hinge_loss_decreases_monotonically_and_the_gn_step_is_near_the_best():
    r = checks.hinge_descent()
    assert r["max_increase"] <= 0 and r["losses"][-1] < 0.5 * r["losses"][0]
    assert 0.3 < r["alpha_gn"] / r["alpha_best"] < 3  # the quadratic model of a hinge is an approximation


def test_steepest_descent_beats_a_fixed_step():
    r = checks.steepest_vs_fixed_step()
    assert r["steepest"][-1] < r["fixed"][-1]


def test_radial_basis_sums_to_one_and_interpolates():
    assert checks.basis_sum_error() < 1e-12
    assert checks.basis_interpolation_error() < 1e-6  # the curves are stored in float32
    rho = RadialBasis(10, 0.5)(torch.tensor([0.0, 0.25, 100.0]))
    assert rho.shape == (3, 10) and rho[0, 0] == 1 and rho[1, 0] == rho[1, 1] == 0.5 and rho[2, -1] == 1


def test_roi_pool_is_exact_on_an_affine_map():
    r = checks.roi_pool_affine()
    assert r["value_error"] < 1e-12 and r["gradient_error"] < 1e-12


def test_response_peak_is_at_the_label_peak():
    for k in (1, 3, 5, 7):
        assert checks.delta_peak(k=k)["same"]


# ---- loss maps, normalisation, initializer ---------------------------------------------------------------

def test_loss_maps_start_from_the_papers_curves():
    sigma = nominal_label_sigma()
    assert abs(sigma - 0.25 * 191 / 5 / 8) < 1e-12
    maps = LearnedLossMaps(sigma)
    d = distance_map(torch.tensor([[[6.0, 7.0]]]), 14)  # (1, 1, 14, 14)
    y, m, v = maps(d)
    assert y.shape == m.shape == v.shape == (1, 1, 14, 14)
    assert float(y[0, 0, 7, 6]) == pytest.approx(1 - math.exp(-0.5 * (9.9 / sigma) ** 2), abs=1e-6)  # G(0) - min G
    assert float(m[0, 0, 7, 6]) == pytest.approx(1 / (1 + math.exp(-3 * math.tanh(2))), abs=1e-6)
    assert float(m[0, 0, 0, 0]) < 0.05 and torch.allclose(v, torch.ones_like(v))
    fixed_y, fixed_m, _ = FixedHingeMaps(sigma)(d)
    assert fixed_m[0, 0, 7, 6] == 1 and fixed_m[0, 0, 0, 0] == 0 and fixed_y.max() == 1


def test_hinge_mse_by_hand():
    label = torch.tensor([[[[1.0, 0.0]]]])
    scores = torch.tensor([[[[0.5, -2.0]]]])
    assert float(hinge_mse(scores, label)) == pytest.approx(0.25 / 2)  # negative score on background: no cost
    scores = torch.tensor([[[[0.5, 3.0]]]])
    assert float(hinge_mse(scores, label)) == pytest.approx((0.25 + 9) / 2)


def test_instance_l2_norm_fixes_the_rms():
    x = torch.randn(4, 8, 5, 5) * torch.tensor([1.0, 10.0, 0.1, 3.0]).view(4, 1, 1, 1)
    out = InstanceL2Norm(scale=0.2)(x)
    rms = out.flatten(1).pow(2).mean(1).sqrt()
    torch.testing.assert_close(rms, torch.full((4,), 0.2), atol=1e-4, rtol=1e-4)


def test_classification_features_and_initializer_shapes():
    cls = ClassificationFeatures(16, 8, filter_size=5)
    z = cls(torch.randn(6, 16, 14, 14))
    assert z.shape == (6, 8, 14, 14)
    with pytest.raises(ValueError, match="channels"):
        ClassificationFeatures(16, 8, 5, learned=False)
    init = FilterInitializer(8, 5)
    boxes = torch.tensor([[4.0, 4.0, 5.0, 5.0]]).repeat(2, 3, 1)
    f0 = init(z.view(2, 3, 8, 14, 14), boxes)
    assert f0.shape == (2, 8, 5, 5)


def test_initializer_is_invariant_to_the_order_of_train_frames():
    torch.manual_seed(0)
    init = FilterInitializer(4, 3)
    z = torch.randn(1, 3, 4, 10, 10)
    boxes = torch.tensor([[[2.0, 3.0, 4.0, 3.0], [3.0, 3.5, 4.0, 3.0], [2.5, 2.0, 5.0, 4.0]]])
    perm = torch.tensor([2, 0, 1])
    torch.testing.assert_close(init(z, boxes), init(z[:, perm], boxes[:, perm]))


def test_roi_pool_box_gradient_matches_finite_differences_on_a_random_map():
    g = torch.Generator().manual_seed(3)
    feat = torch.randn(1, 2, 12, 12, generator=g, dtype=torch.float64)
    box = torch.tensor([[3.2, 2.9, 4.3, 5.1]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda b: roi_pool(feat, b, 3, 2), (box,), eps=1e-6, atol=1e-6)


def test_optimizer_is_differentiable_through_every_iteration():
    p = checks.random_problem(0, dtype=torch.float32)
    sd = SteepestDescent(num_iter=3)
    x = p["features"].clone().requires_grad_(True)
    filters, losses = sd(p["filter"], x, p["y"], p["m"], p["v"], p["weight"])
    assert len(filters) == 4 and len(losses) == 4
    filters[-1].sum().backward()
    assert x.grad is not None and sd.rho.grad is not None and sd.log_step.grad is not None
    assert torch.isfinite(x.grad).all()


def test_gradient_descent_uses_its_learned_coefficient_steps():
    p = checks.random_problem(0, dtype=torch.float32)
    gd = GradientDescent(channels=8, filter_size=3, num_iter=1, lam_init=0.05, step_init=1e-3)
    filters, _ = gd(p["filter"], p["features"], p["y"], p["m"], p["v"], p["weight"])
    from mtl.dimp import gradient_and_jg

    g, _, _ = gradient_and_jg(p["features"], p["filter"], p["y"], p["m"], p["v"], p["weight"], gd.lam)
    torch.testing.assert_close(filters[1], p["filter"] - 1e-3 * g)


def test_bad_optimizer_settings_raise():
    with pytest.raises(ValueError, match="lam_init > 0"):
        SteepestDescent(lam_init=0)
    with pytest.raises(ValueError, match="num_bins"):
        RadialBasis(1, 0.1)
    assert np.isfinite(nominal_label_sigma())


# ---- bank geometry and training ---------------------------------------------------------------------------

def test_box_to_cells_round_trips_and_puts_the_crop_centre_mid_map():
    from mtl.dimp.data import CropGeometry

    geo = CropGeometry()
    assert geo.map_size == 14
    box = np.array([100.0, 60.0, 40.0, 30.0])
    center = np.array([119.5, 74.5])  # the box's centre (pixel-centre convention)
    side = geo.crop_side(box[2:])
    cells = geo.box_to_cells(box, center, side)
    np.testing.assert_allclose(cells[:2] + cells[2:] / 2, [6.5, 6.5])  # (191 - 1) / 2 = 95 = 43 + 8 * 6.5
    np.testing.assert_allclose(geo.cells_to_box(cells, center, side), box)
    np.testing.assert_allclose(cells[2] * cells[3], (191 / 5 / 8) ** 2)  # sqrt(wh) -> 191 / 5 px


def test_jittered_crop_keeps_the_target_where_its_cells_say():
    from mtl.dimp.data import CropGeometry, jittered_crop

    geo = CropGeometry()
    frame = np.zeros((240, 320, 3), np.uint8)
    box = np.array([150.0, 100.0, 30.0, 30.0])
    frame[100:130, 150:180] = 255
    rng = np.random.default_rng(0)
    for _ in range(5):
        crop, cells = jittered_crop(frame, box, geo, rng, scale_sigma=0.25, center_factor=2.0)
        u0, v0 = cells[:2] * 8 + 43  # back to crop coordinates: the white square's edges
        u1, v1 = u0 + cells[2] * 8, v0 + cells[3] * 8
        inside = crop[int(np.ceil(v0)) + 1:int(v1) - 1, int(np.ceil(u0)) + 1:int(u1) - 1]
        assert inside.size and inside.min() > 200
        ring = crop[max(int(v0) - 3, 0), int(u0) + 1:int(u1) - 1]
        assert ring.max() < 60


def test_bank_batches_cover_sets_and_repeat_by_seed():
    from mtl.dimp.net import BankBatches

    bank = {"features": torch.arange(10, dtype=torch.float16).view(10, 1, 1, 1, 1).expand(10, 2, 1, 1, 1),
            "boxes": torch.zeros(10, 2, 4)}
    epoch = [b[0][:, 0, 0, 0, 0].tolist() for b in BankBatches(bank, 4, seed=1)]
    assert sorted(sum(epoch, [])) == list(range(10)) and len(epoch) == 3
    again = [b[0][:, 0, 0, 0, 0].tolist() for b in BankBatches(bank, 4, seed=1)]
    assert epoch == again
    val = [b[0][:, 0, 0, 0, 0].tolist() for b in BankBatches(bank, 4, 6, shuffle=False)]
    assert val == [[0, 1, 2, 3], [4, 5]]


@pytest.mark.parametrize("variant", ["dimp", "sd_baseline", "gd", "init_only"])
def test_variants_build_and_predict(variant):
    from mtl.dimp.net import DiMPNet, DiMPStep, config_variant

    cfg = config_variant(variant)
    net = DiMPNet(64, cfg)
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 6, 64, 14, 14, generator=g)
    boxes = torch.tensor([5.0, 5.0, 3.0, 3.0]).repeat(2, 6, 1)
    out = DiMPStep(3, cfg)(net, (feats, boxes))
    assert torch.isfinite(out["loss"])
    filters, _ = net.predict(net.classification_features(feats[:, :3]), boxes[:, :3])
    assert len(filters) == (1 if variant == "init_only" else cfg.num_iter + 1)
    if variant == "sd_baseline":
        assert float(filters[0].abs().max()) == 0  # Table 2's baseline starts from a zero filter


def test_a_few_training_steps_lower_the_test_loss():
    from mtl.dimp.net import DiMPConfig, DiMPNet, DiMPStep
    from mtl.dimp.train import make_optimizer

    torch.manual_seed(0)
    cfg = DiMPConfig(channels=16, epochs=10)
    net = DiMPNet(16, cfg)
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(4, 6, 16, 14, 14, generator=g)
    boxes = torch.tensor([4.0, 5.0, 3.0, 3.0]).repeat(4, 6, 1)
    feats[:, :, :4, 6:8, 5:7] += 3.0  # the target: a distinctive pattern around its centre (6.5, 5.5)
    step = DiMPStep(3, cfg)
    optimizer, _ = make_optimizer(net, cfg)
    first = float(step(net, (feats, boxes))["loss"])
    for _ in range(15):
        loss = step(net, (feats, boxes))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(step(net, (feats, boxes))["loss"]) < 0.8 * first


def test_config_refuses_bad_settings():
    from mtl.dimp.net import DiMPConfig, config_variant

    with pytest.raises(ValueError, match="odd"):
        DiMPConfig(filter_size=4)
    with pytest.raises(ValueError, match="loss"):
        DiMPConfig(loss="l1")
    with pytest.raises(KeyError, match="unknown DiMP variant"):
        config_variant("nope")


def test_quick_training_writes_a_reloadable_checkpoint(tmp_path):
    from mtl.dimp.train import load_dimp, train_dimp

    net, meta = train_dimp(quick=True, directory=tmp_path, progress=False)
    assert not meta["loaded"] and np.isfinite(meta["history"]["val_loss"][-1])
    again, meta2 = train_dimp(quick=True, directory=tmp_path, progress=False)
    assert meta2["loaded"]
    loaded = load_dimp(meta["checkpoint"])
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), loaded.state_dict().values()))


# ---- IoU-Net ------------------------------------------------------------------------------------------------

def test_box_iou_by_hand():
    from mtl.dimp.iounet import box_iou

    a = torch.tensor([0.0, 0.0, 2.0, 2.0])
    assert float(box_iou(a, a)) == 1
    assert float(box_iou(a, torch.tensor([1.0, 0.0, 2.0, 2.0]))) == pytest.approx(2 / 6)
    assert float(box_iou(a, torch.tensor([5.0, 5.0, 1.0, 1.0]))) == 0


def test_proposals_respect_the_minimum_iou_and_report_it():
    from mtl.dimp.iounet import box_iou, sample_proposals

    boxes = torch.tensor([[3.0, 4.0, 4.0, 5.0], [1.0, 1.0, 2.0, 6.0]])
    props, iou = sample_proposals(boxes, 16, (0.05, 0.3, 0.6), torch.Generator().manual_seed(0), min_iou=0.1)
    assert props.shape == (2, 16, 4) and iou.shape == (2, 16)
    assert float(iou.min()) >= 0.1 and float(iou.max()) < 1
    torch.testing.assert_close(iou, box_iou(props, boxes[:, None]))


def test_iounet_learns_and_refinement_climbs_its_prediction():
    from mtl.dimp.iounet import IoUNet, IoUNetConfig, IoUStep, refine_boxes

    torch.manual_seed(0)
    cfg = IoUNetConfig(hidden=16, proposals=16)
    net = IoUNet(8, cfg)
    feats = torch.zeros(4, 6, 8, 14, 14)
    boxes = torch.tensor([[4.0, 5.0, 4.0, 3.0], [6.0, 3.0, 3.0, 5.0]]).repeat(2, 1)[:, None].expand(4, 6, 4).clone()
    for b in range(4):
        for n in range(6):
            x, y, w, h = boxes[b, n].long().tolist()
            feats[b, n, :, y:y + h, x:x + w] = 1.0  # the target: a block of ones
    step = IoUStep(3, cfg, seed=0)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    first = float(step(net, (feats, boxes))["loss"])
    for _ in range(150):
        loss = step(net, (feats, boxes))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss) < 0.5 * first
    net.eval()
    mod = net.modulation(feats[:1, 0], boxes[:1, 0])
    test = net.test_features(feats[:1, 3])
    start = boxes[0, 3] + torch.tensor([1.0, -1.0, 1.0, 0.5])
    before = float(net.predict_iou(mod, test, start[None, None]))
    box, iou = refine_boxes(net, mod, test, start[None], steps=5, top=1)
    assert float(iou[0]) > before


# ---- the tracker ----------------------------------------------------------------------------------------------

def _square_video(n=12, size=(160, 200)):
    g = np.random.default_rng(0)
    bg = (g.random((*size, 3)) * 255).astype(np.uint8)
    frames = []
    for i in range(n):
        f = bg.copy()
        f[60:90, 50 + 3 * i:80 + 3 * i] = (255, 255, 0)
        frames.append(f)
    return frames, np.array([50.0, 60.0, 30.0, 30.0])


@pytest.mark.parametrize("options", [{"box": "scales"}, {"box": "iounet"}, {"box": "scales", "update": "average"},
                                     {"box": "scales", "update": "none"}])
def test_untrained_tracker_runs_and_repeats_with_a_seed(options):
    from mtl import eval as ev
    from mtl.dimp import make_dimp_tracker
    from mtl.utils import seed_everything

    frames, box = _square_video()
    runs = []
    for _ in range(2):
        seed_everything(0)
        trk = make_dimp_tracker(checkpoint=None, iounet_checkpoint=None, update_interval=5, **options)
        runs.append(ev.track_frames(trk, frames, box))
    assert not runs[0]["failed_frames"] and runs[0]["boxes"].shape == (12, 4)
    np.testing.assert_array_equal(runs[0]["boxes"], runs[1]["boxes"])
    assert len(trk.update_log()) == 11


def test_memory_weights_sum_to_one_and_keep_the_first_frames_share():
    from mtl.dimp import make_dimp_tracker

    frames, box = _square_video(4)
    trk = make_dimp_tracker(checkpoint=None, box="scales", memory_size=20, lr=0.3, first_frame_min_weight=0.25)
    trk.init(frames[0], box)
    z = trk.memory_z[0]
    for _ in range(12):  # fills the memory and then replaces samples
        trk._insert(z, np.array([5.0, 5.0, 3.0, 3.0]), 0.3)
        w = trk.memory_weights
        assert abs(float(w.sum()) - 1) < 1e-5 and float(w[:trk.first_count].sum()) >= 0.25 - 1e-6
        assert len(w) <= 20
    assert len(trk.memory_weights) == 20


def test_tracking_options_are_checked():
    from mtl.dimp import DiMPTracking, make_dimp_tracker

    with pytest.raises(TypeError, match="unknown DiMP tracking options"):
        make_dimp_tracker(checkpoint=None, box="scales", windw=1)
    with pytest.raises(ValueError, match="update must be"):
        DiMPTracking(update="sometimes")
    with pytest.raises(ValueError, match="iou_size_rate"):
        DiMPTracking(iou_size_rate=0.0)


def test_iou_size_rate_blends_the_last_size_with_the_iounets():
    """One frame with the same random candidates: the size at rate r is (1 - r) x the last size + r x rate 1's."""
    from mtl.dimp import make_dimp_tracker
    from mtl.utils import seed_everything

    frames, box = _square_video(2)
    out = {}
    for rate in (1.0, 0.25):
        seed_everything(0)
        trk = make_dimp_tracker(checkpoint=None, iounet_checkpoint=None, iou_size_rate=rate, update="none")
        trk.init(frames[0], box)
        out[rate] = trk.update(frames[1])
    np.testing.assert_allclose(out[1.0][:2] + out[1.0][2:] / 2, out[0.25][:2] + out[0.25][2:] / 2, atol=1e-9)
    np.testing.assert_allclose(out[0.25][2:], 0.75 * box[2:] + 0.25 * out[1.0][2:], atol=1e-9)
    assert np.abs(out[1.0][2:] - box[2:]).max() > 1e-3  # the IoU-Net did move the size


def test_registered_tracker_uses_the_settings_notebook_05_chose_on_val():
    """`mtl benchmark --tracker dimp` must track as the notebook's headline row: the committed val choice."""
    import json
    from pathlib import Path

    from mtl.dimp import DiMPTracking

    path = Path(__file__).resolve().parents[1] / "results" / "05_dimp.json"
    if not path.is_file():
        pytest.skip("no full-mode results of notebook 05")
    chosen = json.loads(path.read_text())["tracking"]
    assert chosen and {k: getattr(DiMPTracking(), k) for k in chosen} == chosen


# ---- Table 2's "+FT": a fine-tuned backbone tail ------------------------------------------------------------

def _ft_pair():
    """A plain DiMP net and a "+FT" net with an untuned tail copy and the same predictor weights."""
    from mtl.dimp.net import DiMPConfig, DiMPNet, FineTune
    from mtl.dimp.train import finetune_net
    from mtl.siamfc import SiamFCConfig, SiamFCNet

    torch.manual_seed(0)
    backbone = SiamFCNet.from_config(SiamFCConfig()).backbone.eval()
    cfg = DiMPConfig()
    plain = DiMPNet(backbone.out_channels, cfg).eval()
    ft = finetune_net(backbone, cfg, FineTune()).eval()
    missing, unexpected = ft.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("tail.") for k in missing)
    return backbone, plain, ft


def test_finetuned_tail_starts_as_the_backbone_and_is_a_copy():
    backbone, plain, ft = _ft_pair()
    assert len(ft.tail) == 2 and ft.tail[0] is not backbone[3]
    x = torch.rand(2, 3, 191, 191) * 255
    with torch.no_grad():
        a = plain.classification_features(backbone(x)[None])
        b = ft.classification_features(backbone[:3](x)[None])
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        ft.tail[0][0].weight.add_(1.0)
    assert not torch.equal(ft.tail[0][0].weight, backbone[3][0].weight)  # the tail does not write into SiamFC


def test_finetuned_tail_keeps_its_batch_norm_statistics_in_training():
    _, _, ft = _ft_pair()
    ft.train()
    bns = [m for m in ft.tail.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns) and ft.features.training
    mean = bns[0].running_mean.clone()
    ft.classification_features(torch.randn(1, 2, 96, 18, 18) * 5)
    assert torch.equal(bns[0].running_mean, mean)


def test_optimizer_gives_the_tail_its_own_learning_rate():
    from mtl.dimp.train import make_optimizer

    _, plain, ft = _ft_pair()
    with pytest.raises(ValueError, match="tail_lr"):
        make_optimizer(ft, ft.config)
    optimizer, _ = make_optimizer(ft, ft.config, tail_lr=1e-4)
    tail_ids = {id(p) for p in ft.tail.parameters()}
    groups = [g for g in optimizer.param_groups if {id(p) for p in g["params"]} == tail_ids]
    assert len(groups) == 1 and groups[0]["lr"] == 1e-4
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(ft.parameters()))
    assert len(make_optimizer(plain, plain.config)[0].param_groups) == 2


def test_tracker_feeds_the_classifier_from_the_tail_and_the_iounet_from_the_frozen_backbone():
    from mtl.dimp import DiMPTracker
    from mtl.ops import image_to_tensor

    backbone, _, ft = _ft_pair()
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        for p in ft.tail.parameters():  # a tuned tail now differs from the backbone's blocks (not just in scale:
            p.add_(0.5 * p.std() * torch.randn(p.shape, generator=g))  # the features end in an L2 norm)
    crops = (np.random.default_rng(0).random((2, 191, 191, 3)) * 255).astype(np.uint8)
    x, z = DiMPTracker(ft, backbone, box="scales").features(crops)
    with torch.no_grad():
        images = image_to_tensor(crops, True)
        torch.testing.assert_close(x, backbone(images))
        torch.testing.assert_close(z, ft.classification_features(backbone[:3](images)[None])[0])
        assert not torch.allclose(z, ft.features(backbone(images)), atol=1e-3)


def test_tail_that_is_not_the_backbones_last_blocks_is_refused():
    import copy

    from mtl.dimp import DiMPTracker
    from mtl.dimp.net import DiMPNet

    backbone, plain, _ = _ft_pair()
    wrong = DiMPNet(backbone.out_channels, plain.config, tail=copy.deepcopy(backbone[2:4]))
    with pytest.raises(ValueError, match="last blocks"):
        DiMPTracker(wrong, backbone, box="scales")


def test_bank_key_gains_the_blocks_only_for_a_tail_bank(monkeypatch):
    """The conv5 bank keeps its key (stored banks and checkpoints stay valid); the conv3 bank gets its own."""
    import mtl.cache
    from mtl.dimp.data import cached_bank

    keys = []
    monkeypatch.setattr(mtl.cache, "cached_tensors", lambda name, key, build, quick=False: keys.append(key))
    for blocks in (None, 3):
        cached_bank(torch.nn.Identity(), "w", "synth:val", num_sets=2, seed=0, quick=True, blocks=blocks)
    assert "blocks" not in keys[0] and keys[1] == {**keys[0], "blocks": 3}
    assert set(keys[0]) == {"weights", "spec", "quick", "num_sets", "seed", "data_seed", "geometry", "recipe"}


def test_untuned_tail_tracks_exactly_like_dimp():
    from mtl import eval as ev
    from mtl.dimp import DiMPTracker
    from mtl.utils import seed_everything

    backbone, plain, ft = _ft_pair()
    frames, box = _square_video()
    runs = []
    for net in (plain, ft):
        seed_everything(0)
        runs.append(ev.track_frames(DiMPTracker(net, backbone, box="scales", update_interval=5), frames, box))
    np.testing.assert_allclose(runs[0]["boxes"], runs[1]["boxes"], atol=1e-3)


def test_quick_finetuning_trains_a_copy_of_the_tail(tmp_path, monkeypatch):
    import mtl.siamfc
    from mtl.dimp.train import load_dimp_ft, train_dimp_ft

    siamfc, meta = mtl.siamfc.train_siamfc(quick=True, progress=False)
    monkeypatch.setattr(mtl.siamfc, "train_siamfc", lambda *a, **k: (siamfc, meta))  # fine-tune this very SiamFC
    before = {k: v.clone() for k, v in siamfc.backbone.state_dict().items()}
    net, meta = train_dimp_ft(quick=True, directory=tmp_path, progress=False)
    assert not meta["loaded"] and np.isfinite(meta["history"]["val_loss"][-1])
    assert all(torch.equal(before[k], v) for k, v in siamfc.backbone.state_dict().items())  # SiamFC untouched
    tail_start = siamfc.backbone[3:].state_dict()
    assert any(not torch.equal(v, tail_start[k]) for k, v in net.tail.state_dict().items() if "running" not in k)
    assert all(torch.equal(v, tail_start[k]) for k, v in net.tail.state_dict().items() if "running" in k)
    loaded = load_dimp_ft(meta["checkpoint"])
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), loaded.state_dict().values()))


def test_finetune_default_is_the_learning_rate_notebook_05_chose_on_val():
    """`load_dimp_ft()` must load the +FT model of the notebook's Table 2: the committed val choice."""
    import json
    from pathlib import Path

    from mtl.dimp.net import FineTune

    path = Path(__file__).resolve().parents[1] / "results" / "05_dimp.json"
    chosen = json.loads(path.read_text()).get("finetune") if path.is_file() else None
    if not chosen:
        pytest.skip("no full-mode +FT results of notebook 05")
    val = {float(k): v for k, v in chosen["val_by_lr"].items()}
    assert FineTune().lr == chosen["lr"] == min(val, key=val.get)

"""Tests of GradNet (mtl.gradnet): the self-checks of the spec, the tracker's exactness at U2 = 0, training and loading."""
import numpy as np
import pytest
import torch

from mtl.eval import make_tracker, track_sequence
from mtl.gradnet import (GradNetConfig, GradNetNet, GradNetPairTransform, GradNetUpdater, load_gradnet, load_snapshots,
                         train_gradnet)
from mtl.gradnet import checks
from mtl.losses import balanced_logistic_loss
from mtl.siamfc import SiamFCConfig, SiamFCNet, SiamFCTracker

from test_updaters import _square_frame, _square_sequence


@pytest.fixture(scope="module")
def tiny():
    net = checks.tiny_gradnet()
    return net, checks.random_problem(net)


def test_inner_gradient_matches_finite_differences(tiny):
    net, (f2, x, labels) = tiny
    assert checks.finite_difference_error(net, f2, x, labels) < 1e-6


def test_second_order_path_passes_gradcheck_and_is_needed(tiny):
    net, (f2, x, labels) = tiny
    assert checks.second_order_gradcheck(net, f2, x, labels)
    assert checks.directional_error(net, f2, x, labels, create_graph=True) < 1e-6
    # without create_graph the analytic gradient misses the term through g: the same check must fail
    assert checks.directional_error(net, f2, x, labels, create_graph=False) > 1e-2
    assert checks.first_order_difference(net, f2, x, labels) > 1e-3


@pytest.mark.parametrize("train_mode", [False, True])
def test_templates_of_a_batch_are_independent(tiny, train_mode):
    net, (f2, x, labels) = tiny
    net.train(train_mode)  # in train mode too: no batch statistics couple the templates
    try:
        assert checks.joint_vs_own_gradient(net, f2, x, labels) < 1e-12
        assert checks.alone_vs_batch(net, f2, x, labels) < 1e-12
    finally:
        net.eval()


def test_train_mode_keeps_batch_norm_statistics(tiny):
    net, _ = tiny
    net.train()
    assert net.training and all(not m.training for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    net.eval()


def test_all_pairs_losses_are_means_of_the_per_pair_losses(tiny):
    net, (f2, x, labels) = tiny
    with torch.no_grad():
        beta = net.upper(f2)
        joint = net.template_losses(net.scores(beta, x, True), labels, True)
        for b in range(beta.shape[0]):
            own = [balanced_logistic_loss(net.head(beta[b:b + 1], x[i:i + 1]), labels[i]) for i in range(x.shape[0])]
            assert float(joint[b]) == pytest.approx(float(torch.stack(own).mean()), rel=1e-12)


def test_zero_update_branch_gives_siamfc_template_exactly():
    torch.manual_seed(0)
    net = GradNetNet.from_siamfc(SiamFCNet(width=0.25)).eval()
    z = torch.rand(2, 3, 127, 127) * 255
    x_feats = net.search_features(torch.rand(2, 3, 239, 239) * 255)
    labels = torch.zeros(2, 15, 15)
    labels[:, 7, 7] = 1
    out = net(z, x_feats, labels)
    assert torch.equal(out.beta_star, net.backbone(z))  # U2 = tanh(0 * ...) = 0: β* = U1(f2) = SiamFC's template
    assert torch.equal(out.loss_star, out.loss)


@pytest.mark.parametrize("weight", [1.0, 0.15])
def test_gradnet_tracker_with_zero_update_tracks_as_siamfc(weight):
    torch.manual_seed(0)
    siamfc = SiamFCNet(width=0.25).eval()
    seq = _square_sequence(12)
    opts = dict(num_scales=3, response_up=4)
    plain = track_sequence(SiamFCTracker(siamfc, **opts), seq)["boxes"]
    updater = GradNetUpdater(fusion_weight=weight, interval=2)
    gradnet = track_sequence(SiamFCTracker(GradNetNet.from_siamfc(siamfc).eval(), updater=updater, **opts), seq)["boxes"]
    assert np.array_equal(plain, gradnet)
    assert [u["frame"] for u in updater.updates][:3] == [0, 2, 4]  # the first frame's update, then every 2nd frame


@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_update_moves_the_sample_loss_the_way_u2_points(sign):
    torch.manual_seed(0)
    net = GradNetNet.from_siamfc(SiamFCNet(width=0.25)).eval()
    with torch.no_grad():  # a hand-made U2: h2 = f2 + sign * tanh(0.1 * c * g), a step against (or along) the gradient
        net.update_branch.conv.weight.zero_()
        net.update_branch.conv.bias.zero_()
        for ch in range(net.update_branch.conv.out_channels):
            net.update_branch.conv.weight[ch, ch, 1, 1] = sign
        net.update_branch.bn.weight.fill_(0.1 * (1 + 1e-6) ** 0.5)
    seq = _square_sequence(8)
    updater = GradNetUpdater(interval=1)
    net.grad_scale.fill_(1.0)
    tracker = SiamFCTracker(net, updater=updater, num_scales=1, response_up=4)
    tracker.init(seq.frame(0), seq.boxes[0])
    # calibrate c on the first frame's sample so that the step is small but visible
    net.grad_scale.fill_(1.0 / max(updater.updates[0]["grad_rms"], 1e-30))
    track_sequence(tracker, seq)
    lowered = [u["loss_after"] < u["loss"] for u in updater.updates]
    assert len(lowered) == len(seq)  # frame 0 plus every later frame (interval 1)
    assert np.mean(lowered) >= 0.8 if sign < 0 else np.mean(lowered) <= 0.2
    assert all(u["change"] > 0 for u in updater.updates)


def test_without_online_update_the_first_target_model_stays():
    torch.manual_seed(0)
    net = GradNetNet.from_siamfc(SiamFCNet(width=0.25)).eval()
    with torch.no_grad():
        net.update_branch.bn.weight.fill_(0.5)  # a non-zero U2, so an update would change the template
    seq = _square_sequence(12)
    updater = GradNetUpdater(online=False)
    tracker = SiamFCTracker(net, updater=updater, num_scales=1, response_up=4)
    tracker.init(seq.frame(0), seq.boxes[0])
    first = tracker.template.clone()
    assert not torch.equal(first, tracker.template0)  # β* from the first frame differs from SiamFC's template
    for f in range(1, len(seq)):
        tracker.update(seq.frame(f))
    assert torch.equal(tracker.template, first) and [u["frame"] for u in updater.updates] == [0]
    assert len(updater._memory) <= updater.memory_size


def test_tracker_samples_are_labelled_where_the_target_was_put():
    from types import SimpleNamespace

    from mtl.updaters import shifted_labels, tracked_offset

    tracker = SimpleNamespace(config=SiamFCConfig())
    # search crop of scale 1 is 255 px of image around (100, 100); the target was put 16 px right and 8 px up
    result = SimpleNamespace(search_size=255.0, scale_factors=np.array([1 / 1.0375, 1.0, 1.0375]), scale_index=1,
                             center=np.array([116.0, 92.0]), search_center=np.array([100.0, 100.0]))
    offset = tracked_offset(tracker, result)
    assert np.allclose(offset, [2.0, -1.0])  # 16 px / 8 px per cell, -8 px / 8
    rows, cols = np.nonzero(shifted_labels(17, offset, 2.0))
    assert (cols.mean(), rows.mean()) == (10.0, 7.0)  # centre cell (8, 8) moved 2 right, 1 up


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="gradient branch"):
        GradNetConfig(all_pairs=True, use_gradient=False)
    with pytest.raises(ValueError, match="fusion_weight"):
        GradNetUpdater(fusion_weight=1.5)
    with pytest.raises(ValueError, match="reliability"):
        GradNetUpdater(reliability="sometimes")
    seq = _square_sequence(3)
    with pytest.raises(TypeError, match="GradNetNet"):
        SiamFCTracker(SiamFCNet(width=0.25), updater=GradNetUpdater()).init(seq.frame(0), seq.boxes[0])
    net = GradNetNet.from_siamfc(SiamFCNet(width=0.25)).eval()
    with pytest.raises(ValueError, match="every frame"):
        SiamFCTracker(net, updater=GradNetUpdater(), update_interval=5).init(seq.frame(0), seq.boxes[0])


def test_shifted_pair_puts_the_target_where_the_label_says():
    cfg = SiamFCConfig()
    frame = _square_frame(80, 60, side=24)
    frame[:] = 40
    frame[48:72, 68:92] = 250  # a plain bright square centred at (80, 60)
    box = np.array([68.0, 48.0, 24.0, 24.0])
    transform = GradNetPairTransform(cfg, augment=True, label_shift=2)
    for seed in range(6):
        z, x, labels = transform(frame, box, frame, box, rng=np.random.default_rng(seed))
        assert z.shape == (3, 127, 127) and x.shape == (3, 239, 239) and labels.shape == (15, 15)
        ys, xs = np.nonzero(x[0].numpy() > 200)
        target_cells = (np.array([xs.mean(), ys.mean()]) - 119) / cfg.total_stride
        ly, lx = np.nonzero(labels.numpy())
        label_cells = np.array([lx.mean(), ly.mean()]) - 7
        assert np.abs(target_cells - label_cells).max() < 0.75  # within the +-4 px (half-cell) jitter
    _, _, centred = GradNetPairTransform(cfg, augment=False, label_shift=2)(frame, box, frame, box)
    ly, lx = np.nonzero(centred.numpy())
    assert (lx.mean(), ly.mean()) == (7, 7)


def test_registered_variants():
    assert make_tracker("siamfc_gradnet_wo_u", checkpoint=None).updater.online is False
    assert make_tracker("siamfc_gradnet_wo_m", checkpoint=None).net.config.all_pairs is False
    wo_mg = make_tracker("siamfc_gradnet_wo_mg", checkpoint=None, fusion_weight=0.5)
    assert wo_mg.net.config.use_gradient is False and wo_mg.updater.fusion_weight == 0.5
    assert make_tracker("siamfc_gradnet_2u", checkpoint=None).net.upper_second is not None
    assert make_tracker("siamfc_gradnet", checkpoint=None, window_influence=0.3).config.window_influence == 0.3


def test_quick_training_writes_a_reloadable_checkpoint(tmp_path):
    net, meta = train_gradnet(quick=True, directory=tmp_path, progress=False)
    assert not meta["loaded"] and meta["grad_scale"] == pytest.approx(1 / meta["rms_grad"], rel=1e-5)
    assert float(net.update_branch.bn.weight.detach().abs().max()) > 0  # U2 left its exact-zero start
    assert np.isfinite(meta["history"]["val_loss"][-1])
    assert sorted(load_snapshots(meta["checkpoint"])) == [0, 1]
    again, meta2 = train_gradnet(quick=True, directory=tmp_path, progress=False)
    assert meta2["loaded"]
    for (k, a), b in zip(net.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    loaded = load_gradnet(meta["checkpoint"])
    assert loaded.config.variant == "Ours"
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), loaded.state_dict().values()))

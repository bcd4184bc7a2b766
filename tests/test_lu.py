"""Learning to Update: the ConvGRU updater, its training unroll and its tracker (mtl.lu)."""
import numpy as np
import pytest
import torch

from mtl import eval as ev
from mtl.lu import ClipWindows, LUConfig, LUNet, LUUnroll, LUUpdater, anchor_loss, checks, fixed_model_loss
from mtl.lu.features import exemplar_windows
from mtl.siamfc import SiamFCNet, SiamFCTracker

from test_eval import FakeSequence


def _siamfc(width=0.125, seed=0):
    torch.manual_seed(seed)
    return SiamFCNet(width=width).eval()


def _lu(channels, seed=0, **changes):
    torch.manual_seed(seed)
    cfg = LUConfig(**{"hidden": 6, "unroll": 5, "interval": 5, **changes})
    net = LUNet(channels, cfg, scale=2.0)
    with torch.no_grad():  # a non-trivial output layer (an untrained one would do too, but small)
        net.out.weight.mul_(3.0)
    return net


# -- self-checks (the notebook prints the same numbers) -----------------------------------------

def test_convgru_cell_equals_a_hand_written_gru_of_the_same_convention():
    assert checks.gru_cell_error() < 1e-12


def test_with_a_constant_gate_the_updater_is_notebook_02s_ema():
    seq = FakeSequence("a", n=12, size=(96, 80))
    err = checks.ema_special_case_error(_siamfc(), seq, rate=0.1, frames=12)
    assert err["template"] < 1e-5 and err["boxes"] < 1e-3


def test_the_ema_check_fails_for_another_rate():
    # the check can fail: an EMANet of another rate is not the EMA of 0.1
    seq = FakeSequence("a", n=8, size=(96, 80))
    net = _siamfc()
    from mtl.updaters import EMAUpdater
    ema = SiamFCTracker(net, updater=EMAUpdater(0.1))
    lu = SiamFCTracker(net, updater=LUUpdater(checks.EMANet(net.backbone.out_channels, 0.3), interval=1))
    for t in (ema, lu):
        t.init(seq.frame(0), seq.boxes[0])
        for f in range(1, len(seq)):
            t.update(seq.frame(f))
    assert float((ema.template - lu.template).abs().max()) > 1e-3 * float(ema.template0.abs().max())


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_stepping_frame_by_frame_equals_one_pass(cell):
    assert checks.stepwise_error(_lu(8, cell=cell)) < 1e-6


def test_truncated_bptt_gradient_is_zero_before_the_cut_and_nonzero_inside():
    net = _lu(8)
    head = SiamFCNet(width=0.03125).head  # 8 channels
    g = checks.truncation_gradients(net, head, net.config, clip_length=11)
    assert g["before_cut"] == 0.0
    assert g["inside"] > 0.0


def test_exemplar_cut_from_search_features_equals_a_fresh_exemplar_forward():
    backbone = _siamfc(width=0.25).backbone
    image = np.random.default_rng(1).integers(0, 256, size=(255, 255, 3), dtype=np.uint8)
    with torch.no_grad():
        scale = float(backbone(torch.from_numpy(image).permute(2, 0, 1)[None].float()).abs().max())
    assert checks.cut_exemplar_error(backbone, image) < 1e-5 * scale


def test_anchor_loss_is_zero_at_the_anchor_and_free_of_feature_units():
    r = checks.anchor_loss_is_scale_free()
    assert r["at_anchor"] == 0.0 and r["rescaled"] < 1e-12 and r["more_channels"] < 1e-12
    theta1 = torch.ones(1, 2, 6, 6)
    assert float(anchor_loss(2 * theta1, theta1)) == pytest.approx(1.0)  # ‖θ₁‖² / ‖θ₁‖²


# -- pieces ------------------------------------------------------------------------------------

def test_exemplar_windows_are_the_slices_and_refuse_cells_outside_the_map():
    f = torch.randn(3, 4, 22, 22)
    cells = torch.tensor([[0, 0], [8, 8], [16, 5]])
    w = exemplar_windows(f, cells)
    assert w.shape == (3, 4, 6, 6)
    for b, (i, j) in enumerate(cells.tolist()):
        assert torch.equal(w[b], f[b, :, i:i + 6, j:j + 6])
    with pytest.raises(ValueError, match="inside"):
        exemplar_windows(f, torch.tensor([[17, 0], [0, 0], [0, 0]]))
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        exemplar_windows(f, torch.tensor([[1, 1]]))


def test_clip_windows_cover_every_step_once_and_shuffle_by_seed():
    feats = torch.randn(5, 11, 2, 22, 22).half()
    offs = torch.randn(5, 11, 2)
    vis = torch.ones(5, 11, dtype=torch.bool)
    w = ClipWindows(feats, offs, vis, batch_size=2, unroll=4, seed=3)
    windows = list(w)
    assert len(windows) == len(w) == 3 * 3  # 3 batches x windows starting at steps 0, 4, 8 (10 steps)
    assert [int(t0) for *_, t0 in windows[:3]] == [0, 4, 8]
    assert [z.shape[1] for z, *_ in windows[:3]] == [5, 5, 3]  # steps + the next frame
    assert windows[0][0].dtype == torch.float32 and windows[0][1].shape == (2, 5, 2)
    again = ClipWindows(feats, offs, vis, batch_size=2, unroll=4, seed=3)
    assert torch.equal(next(iter(again))[0], windows[0][0])
    assert not torch.equal(next(iter(ClipWindows(feats, offs, vis, 2, 4, seed=4)))[0], windows[0][0])
    with pytest.raises(ValueError, match="offsets"):
        ClipWindows(feats, offs[:, :, :1], vis, 2, 4)


def test_labels_and_ground_truth_cells_follow_the_target_offset():
    unroll = LUUnroll(SiamFCNet(width=0.03125).head, LUConfig(unroll=5))
    offsets = torch.tensor([[0.0, 0.0], [2.2, -1.0]])  # [dx, dy] cells
    labels = unroll.labels(offsets)
    assert labels.shape == (2, 17, 17)
    assert labels[0, 8, 8] == 1 and labels[1, 7, 10] == 1 and labels[1, 8, 8] == 0  # disc centred at row 8-1, col 8+2
    assert unroll.true_cells(offsets).tolist() == [[8, 8], [7, 10]]


def test_lu_config_refuses_inconsistent_settings():
    with pytest.raises(ValueError, match="multiple of the interval"):
        LUConfig(unroll=25, interval=10)
    with pytest.raises(ValueError, match="cell"):
        LUConfig(cell="rnn")
    with pytest.raises(ValueError, match="anchor_weight"):
        LUConfig(anchor_weight=1.5)


def test_a_few_training_steps_lower_the_unroll_loss():
    torch.manual_seed(0)
    head = SiamFCNet(width=0.03125).head
    net = LUNet(8, LUConfig(hidden=6, unroll=5, interval=5, dropout=0.0), scale=1.0)
    z = torch.randn(4, 11, 8, 22, 22)
    z[:, :, :, 8:14, 8:14] += 2.0  # the target: a bright 6x6 patch at the centre of every frame
    offs = torch.zeros(4, 11, 2)
    vis = torch.ones(4, 11, dtype=torch.bool)
    unroll = LUUnroll(head, net.config)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)

    def epoch_loss(train):
        total = 0.0
        for batch in ClipWindows(z, offs, vis, 4, 5, shuffle=False):
            out = unroll(net, batch)
            if train:
                opt.zero_grad()
                out["loss"].backward()
                opt.step()
            total += float(out["loss"].detach())
        return total

    before = epoch_loss(False)
    for _ in range(15):
        epoch_loss(True)
    assert epoch_loss(False) < before


# -- the tracker -------------------------------------------------------------------------------

def test_lu_tracker_replaces_the_model_every_m_frames_only():
    siamfc = _siamfc()
    seq = FakeSequence("a", n=12, size=(96, 80))
    t = SiamFCTracker(siamfc, updater=LUUpdater(_lu(siamfc.backbone.out_channels), interval=4))
    t.init(seq.frame(0), seq.boxes[0])
    changed = []
    for f in range(1, len(seq)):
        before = t.template.clone()
        t.update(seq.frame(f))
        changed.append(not torch.equal(before, t.template))
    assert [f for f, c in zip(range(1, len(seq)), changed) if c] == [4, 8]
    assert [u["frame"] for u in t.updater.updates] == [4, 8] and all(u["drift"] > 0 for u in t.updater.updates)


def test_lu_updater_refuses_a_tracker_that_skips_frames():
    siamfc = _siamfc()
    seq = FakeSequence("a", n=3, size=(96, 80))
    t = SiamFCTracker(siamfc, updater=LUUpdater(_lu(siamfc.backbone.out_channels)), update_interval=2)
    with pytest.raises(ValueError, match="every frame"):
        t.init(seq.frame(0), seq.boxes[0])


def test_siamfc_lu_is_registered_and_its_fingerprint_names_the_updater_weights():
    from mtl.siamfc import SiamFCConfig
    cfg = SiamFCConfig(width=0.125)
    t = ev.make_tracker("siamfc_lu", checkpoint=None, lu_checkpoint=None, config=cfg,
                        lu_config=LUConfig(hidden=6, unroll=5))
    seq = FakeSequence("a", n=6, size=(96, 80))
    run = ev.track_sequence(t, seq)
    assert run["boxes"].shape == (6, 4) and not run["failed_frames"]
    assert [u["frame"] for u in run["updates"]] == [5]
    fp = t.fingerprint()
    with torch.no_grad():
        t.updater.net.out.bias.add_(1.0)
    assert t.fingerprint() != fp


def test_fixed_model_loss_is_the_unroll_loss_of_an_updater_that_never_replaces_the_model():
    torch.manual_seed(0)
    head = SiamFCNet(width=0.03125).head
    z = torch.randn(3, 11, 8, 22, 22)
    offs = torch.randint(-2, 3, (3, 11, 2)).float()
    vis = torch.rand(3, 11) > 0.2
    cfg = LUConfig(hidden=6, unroll=10, interval=10, dropout=0.0)  # the first replacement would be at step 10: none
    net = LUNet(8, cfg).eval()
    unroll = LUUnroll(head, cfg)
    with torch.no_grad():
        cls = float(unroll(net, next(iter(ClipWindows(z, offs, vis, 3, 10, shuffle=False))))["cls"])
    assert fixed_model_loss(head, z, offs, vis) == pytest.approx(cls, rel=1e-5)


# -- CFNet-LU: the updater of CFNet's target model ------------------------------------------------

def _cfnet(width=0.125, seed=0):
    from mtl.cfnet import CFNetNet
    torch.manual_seed(seed)
    return CFNetNet(width=width).eval()


def test_recentred_features_move_the_window_to_the_centre_and_fill_zeros():
    from mtl.lu import recentred_features
    x = torch.arange(2 * 3 * 22 * 22, dtype=torch.float32).reshape(2, 3, 22, 22)
    same = recentred_features(x, torch.tensor([[8, 8], [8, 8]]))
    assert torch.equal(same, x)
    moved = recentred_features(x, torch.tensor([[10, 5], [8, 9]]))  # shifts (+2, -3) and (0, +1)
    assert torch.equal(moved[0, :, 8:14, 8:14], exemplar_windows(x, torch.tensor([[10, 5], [8, 9]]))[0])
    assert torch.equal(moved[0, :, :20, 3:], x[0, :, 2:, :19])
    assert moved[0, :, 20:].abs().sum() == 0 and moved[0, :, :, :3].abs().sum() == 0
    assert torch.equal(moved[1, :, :, :21], x[1, :, :, 1:]) and moved[1, :, :, 21].abs().sum() == 0
    with pytest.raises(ValueError, match="cells must be"):
        recentred_features(x, torch.tensor([8, 8]))


def test_cf_exemplar_is_exact_at_the_centre_and_equals_a_fresh_crop_where_the_cached_one_covers_it():
    net = _cfnet()
    err = checks.cf_exemplar_error(net)
    assert err["overlap"] < 1e-4  # a wrong sign or a swapped row/col would compare other cells
    assert err["by_shift"]["0,0"] == 0.0
    assert err["by_shift"]["1,0"] < err["by_shift"]["3,-3"] < err["by_shift"]["8,-8"]  # the strip grows with the shift
    assert err["by_shift"]["2,2"] < 0.1


def test_an_updater_of_cfnet_has_its_own_key_and_siamfcs_is_unchanged():
    from mtl.cache import checkpoint_path
    from mtl.cfnet import CFNetConfig
    from mtl.lu import load_lu, train_key
    from mtl.siamfc import SiamFCConfig
    # the committed checkpoints were made under these keys: SiamFC-LU's before CFNet-LU existed
    siamfc_key = train_key(LUConfig(), SiamFCConfig())
    assert set(siamfc_key) == {"lu", "siamfc", "clips"} and checkpoint_path("lu", siamfc_key).exists()
    cf_key = train_key(LUConfig(), SiamFCConfig(), CFNetConfig())
    assert checkpoint_path("lu", cf_key).name == "lu-0446b974f014.pt" and checkpoint_path("lu", cf_key).exists()
    assert load_lu(base="cfnet").scale < 0.1 * load_lu().scale  # filters are much smaller numbers than features
    with pytest.raises(ValueError, match="base must be"):
        load_lu(None, base="dimp")
    with pytest.raises(ValueError, match="cfnet_config is for"):
        load_lu(None, cfnet_config=CFNetConfig())


def test_cfnet_unroll_feeds_the_filter_of_the_window_to_the_updater():
    from mtl.lu import CorrelationFilterExemplar, recentred_features
    cf = _cfnet(width=0.03125)  # 8 channels
    exemplar = CorrelationFilterExemplar(cf.cf)
    torch.manual_seed(1)
    z = torch.randn(2, 6, 8, 22, 22)
    offs = torch.randint(-3, 4, (2, 6, 2)).float()  # a different motion on every frame
    seen = []
    unroll = LUUnroll(cf.head, LUConfig(hidden=6, unroll=5, interval=5, estimated_position=False),
                      exemplar=exemplar, project=lambda t: seen.append(t) or t)
    unroll(LUNet(8, unroll.config), next(iter(ClipWindows(z, offs, torch.ones(2, 6, dtype=torch.bool), 2, 5, shuffle=False))))
    assert len(seen) == 5 and seen[0].shape == (2, 8, 6, 6) and not seen[0].requires_grad
    for t in range(5):  # frame t's exemplar: the filter of frame t's map re-centred on frame t's target
        assert torch.allclose(seen[t], cf.cf(recentred_features(z[:, t], unroll.true_cells(offs[:, t]))), atol=1e-6)
    assert not torch.allclose(seen[2], cf.cf(recentred_features(z[:, 2], unroll.true_cells(offs[:, 3]))), atol=1e-6)


def test_feature_scale_and_the_no_update_bar_go_through_cfnets_filter():
    from mtl.lu import CorrelationFilterExemplar, feature_scale
    cf = _cfnet(width=0.03125)
    exemplar = CorrelationFilterExemplar(cf.cf)
    torch.manual_seed(2)
    z = torch.randn(3, 11, 8, 22, 22)
    with torch.no_grad():
        by_hand = cf.cf(z[:, ::5].flatten(0, 1)).pow(2).mean().sqrt()
    assert feature_scale(z, exemplar) == pytest.approx(float(by_hand), rel=1e-5)
    assert feature_scale(z) == pytest.approx(float(z[:, :, :, 8:14, 8:14].pow(2).mean().sqrt()), rel=1e-6)
    offs = torch.randint(-2, 3, (3, 11, 2)).float()
    vis = torch.rand(3, 11) > 0.2
    cfg = LUConfig(hidden=6, unroll=10, interval=10, dropout=0.0)  # no replacement within the window
    unroll = LUUnroll(cf.head, cfg, exemplar=exemplar)
    with torch.no_grad():
        cls = float(unroll(LUNet(8, cfg).eval(), next(iter(ClipWindows(z, offs, vis, 3, 10, shuffle=False))))["cls"])
    assert fixed_model_loss(cf.head, z, offs, vis, exemplar=exemplar) == pytest.approx(cls, rel=1e-5)
    assert fixed_model_loss(cf.head, z, offs, vis) != pytest.approx(cls, rel=1e-3)  # the raw window is another model


def test_cfnet_lu_trains_in_quick_mode_and_reloads(tmp_path):
    from mtl.cfnet import CFNetTracker
    from mtl.lu import base_network, train_lu
    from mtl.siamfc import quick_config
    net, meta = train_lu(quick=True, base="cfnet", directory=tmp_path, progress=False, retrain=True)
    assert meta["base"] == "cfnet" and np.isfinite(meta["history"]["val_cls"][-1])
    again, meta2 = train_lu(quick=True, base="cfnet", directory=tmp_path, progress=False)
    assert meta2["loaded"] and all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    cfnet, _ = base_network("cfnet", quick_config(), quick=True, progress=False)
    t = CFNetTracker(cfnet, quick_config(), updater=LUUpdater(net), name="cfnet_lu")
    seq = FakeSequence("a", n=7, size=(96, 80))
    run = ev.track_sequence(t, seq)
    assert run["boxes"].shape == (7, 4) and [u["frame"] for u in run["updates"]] == [5]


def test_cfnet_lu_is_registered_and_starts_from_cfnets_template():
    from mtl.siamfc import SiamFCConfig
    t = ev.make_tracker("cfnet_lu", checkpoint=None, lu_checkpoint=None, config=SiamFCConfig(width=0.125),
                        lu_config=LUConfig(hidden=6, unroll=5))
    assert t.name == "cfnet_lu" and type(t).__name__ == "CFNetTracker" and type(t.updater).__name__ == "LUUpdater"
    seq = FakeSequence("a", n=6, size=(96, 80))
    run = ev.track_sequence(t, seq)
    assert run["boxes"].shape == (6, 4) and [u["frame"] for u in run["updates"]] == [5]
    assert torch.equal(t.template0, t.extract_template(seq.frame(0), seq.boxes[0]))

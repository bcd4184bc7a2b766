"""Tests of the SiamFC pieces: backbone, head, labels and loss, training loop, pair transform, tracker."""
import dataclasses

import numpy as np
import pytest
import torch

from mtl.backbones import AlexNetV1, scaled_channels
from mtl.heads import SiamFCHead, default_out_scale, xcorr_grouped, xcorr_naive
from mtl.losses import balanced_logistic_loss, balanced_weights, siamfc_labels
from mtl.siamfc import (FreshPairsPerEpoch, SiamFCConfig, SiamFCLoss, SiamFCNet, SiamFCPairTransform,
                        SiamFCTracker, speed_comparison)
from mtl.train import fit


# ---------------------------------------------------------------------------------------------- network


@pytest.mark.parametrize("width", [0.25, 1.0])
def test_backbone_output_sizes_and_stride(width):
    net = AlexNetV1(width).eval()
    assert net.out_channels == scaled_channels(width)[-1]
    with torch.no_grad():
        assert net(torch.zeros(1, 3, 127, 127)).shape[-2:] == (6, 6)
        assert net(torch.zeros(1, 3, 255, 255)).shape[-2:] == (22, 22)
        assert net(torch.zeros(1, 3, 239, 239)).shape[-2:] == (20, 20)
    assert [AlexNetV1.output_size(s) for s in (127, 255, 239)] == [6, 22, 20]
    assert scaled_channels(1.0) == (96, 256, 384, 384, 256)
    with pytest.raises(ValueError):
        AlexNetV1.output_size(50)


def test_backbone_is_translation_equivariant_with_stride_8():
    torch.manual_seed(0)
    net = AlexNetV1(0.25).eval()
    x = torch.rand(1, 3, 150, 150) * 255
    with torch.no_grad():
        full = net(x[:, :, :, :-8])  # columns 0..141
        shifted = net(x[:, :, :, 8:])  # columns 8..149: one feature cell to the left
    torch.testing.assert_close(full[..., 1:], shifted[..., :-1], rtol=1e-4, atol=1e-3)


def test_no_relu_after_conv5():
    torch.manual_seed(0)
    with torch.no_grad():
        f = AlexNetV1(0.25)(torch.rand(2, 3, 127, 127) * 255)
    assert (f < 0).any(), "conv5 features must be able to go negative"


@pytest.mark.parametrize("bz,bx", [(1, 3), (2, 2), (2, 6)])
def test_xcorr_grouped_equals_naive_loop(bz, bx):
    g = torch.Generator().manual_seed(bz * 10 + bx)
    z = torch.randn(bz, 4, 3, 3, generator=g)
    x = torch.randn(bx, 4, 9, 8, generator=g)
    out = xcorr_grouped(z, x)
    assert out.shape == (bx, 1, 7, 6)
    torch.testing.assert_close(out, xcorr_naive(z, x), rtol=1e-5, atol=1e-5)


def test_xcorr_rejects_mismatched_batches():
    with pytest.raises(ValueError, match="multiple"):
        xcorr_grouped(torch.zeros(2, 3, 2, 2), torch.zeros(3, 3, 5, 5))
    with pytest.raises(ValueError, match="channels"):
        xcorr_grouped(torch.zeros(1, 3, 2, 2), torch.zeros(1, 4, 5, 5))


def test_head_scale_and_default_out_scale():
    z, x = torch.ones(1, 2, 2, 2), torch.ones(1, 2, 3, 3)
    out = SiamFCHead(0.5)(z, x)
    torch.testing.assert_close(out, torch.full((1, 1, 2, 2), 4.0))  # 8 products of 1, times 0.5
    assert default_out_scale(256) == pytest.approx(1e-3)
    assert default_out_scale(64) == pytest.approx(4e-3)


# ---------------------------------------------------------------------------------------------- loss


def test_label_map_positives_within_radius_two_cells():
    labels = siamfc_labels(17, 2.0)
    pos = np.argwhere(labels > 0)
    assert len(pos) == 13
    assert np.all(np.hypot(*(pos - 8).T) <= 2)
    assert labels[8, 10] == 1 and labels[9, 9] == 1 and labels[9, 10] == 0 and labels[8, 11] == 0
    assert siamfc_labels(15, 2.0)[7, 7] == 1


def test_balanced_weights_sum_and_split():
    labels = torch.from_numpy(siamfc_labels(15, 2.0))
    w = balanced_weights(labels)
    assert float(w.sum()) == pytest.approx(1.0)
    assert float(w[labels > 0].sum()) == pytest.approx(0.5)
    assert float(w[labels > 0][0]) == pytest.approx(0.5 / 13)
    assert float(w[labels == 0][0]) == pytest.approx(0.5 / (225 - 13))
    # a map without positives puts all weight on the negatives
    torch.testing.assert_close(balanced_weights(torch.zeros(2, 2)), torch.full((2, 2), 0.25))


def test_balanced_logistic_loss_hand_computed():
    # 1 positive (score 2), 3 negatives (scores 0, -1, 1): weights 1/2 and 1/6
    scores = torch.tensor([[[[2.0, 0.0], [-1.0, 1.0]]]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    softplus = lambda v: np.log1p(np.exp(v))  # noqa: E731
    expected = 0.5 * softplus(-2.0) + (softplus(0.0) + softplus(-1.0) + softplus(1.0)) / 6
    assert float(balanced_logistic_loss(scores, labels)) == pytest.approx(expected, rel=1e-6)
    # mean over the batch: two identical maps give the same value
    assert float(balanced_logistic_loss(scores.repeat(2, 1, 1, 1), labels)) == pytest.approx(expected, rel=1e-6)


def test_loss_gradient_matches_finite_differences():
    torch.manual_seed(0)
    scores = torch.randn(2, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.from_numpy(siamfc_labels(5, 1.0)).double()
    assert torch.autograd.gradcheck(lambda s: balanced_logistic_loss(s, labels), (scores,))


# ---------------------------------------------------------------------------------------------- training


def test_fit_decreases_loss_and_records_history():
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    model = torch.nn.Linear(3, 1)
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]

    def step(m, batch):
        xb, yb = batch
        loss = ((m(xb)[:, 0] - yb) ** 2).mean()
        return {"loss": loss, "abs_err": (m(xb)[:, 0] - yb).abs().mean()}

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, 0.5)
    hist = fit(model, step, batches, batches[:1], epochs=3, optimizer=opt, scheduler=sched, progress=False,
               grad_clip=10.0)
    assert hist["epoch"] == [1, 2, 3]
    assert hist["lr"] == pytest.approx([0.1, 0.05, 0.025])
    assert len(hist["train_loss"]) == len(hist["val_loss"]) == len(hist["val_abs_err"]) == 3
    assert hist["train_loss"][-1] < hist["train_loss"][0]


def test_fit_rejects_bad_step_output():
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="loss"):
        fit(model, lambda m, b: {"err": m(b).sum()}, [torch.ones(1, 1)], epochs=1, optimizer=opt, progress=False)
    with pytest.raises(FloatingPointError, match="epoch 1"):
        fit(model, lambda m, b: m(b).sum() * float("nan"), [torch.ones(1, 1)], epochs=1, optimizer=opt,
            progress=False)


def test_fresh_pairs_per_epoch_sampler():
    s = FreshPairsPerEpoch(3, 2)
    assert list(s) == [0, 1, 2] and list(s) == [3, 4, 5] and list(s) == [0, 1, 2] and len(s) == 3


def _square_frame(cx, cy, side=30, size=(120, 160)):
    img = np.full((*size, 3), 40, np.uint8)
    x0, y0 = int(round(cx - (side - 1) / 2)), int(round(cy - (side - 1) / 2))
    img[y0:y0 + side, x0:x0 + side] = (220, 60, 30)
    img[y0 + side // 3:y0 + 2 * side // 3, x0 + side // 3:x0 + 2 * side // 3] = (20, 200, 90)
    return img, np.array([x0, y0, side, side], float)


def test_pair_transform_shapes_and_centering():
    cfg = SiamFCConfig()
    frame, box = _square_frame(80, 60)
    t = SiamFCPairTransform(cfg, augment=False)
    z, x = t(frame, box, frame, box)
    assert z.shape == (3, 127, 127) and x.shape == (3, 239, 239) and z.dtype == torch.float32
    # without augmentation the target's centre is the crops' centre pixel
    assert torch.allclose(z[:, 63, 63], torch.tensor([20.0, 200.0, 90.0]), atol=1)
    assert torch.allclose(x[:, 119, 119], torch.tensor([20.0, 200.0, 90.0]), atol=1)
    # augmentation is deterministic given a Generator
    ta = SiamFCPairTransform(cfg, augment=True)
    a = ta(frame, box, frame, box, rng=np.random.default_rng(3))
    b = ta(frame, box, frame, box, rng=np.random.default_rng(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_one_training_step_on_pairs_lowers_loss():
    torch.manual_seed(0)
    cfg = SiamFCConfig()
    net = SiamFCNet(0.25)
    t = SiamFCPairTransform(cfg, augment=False)
    pairs = []
    for i in range(4):
        frame, box = _square_frame(60 + 7 * i, 50 + 3 * i)
        pairs.append(t(frame, box, frame, box))
    z = torch.stack([p[0] for p in pairs])
    x = torch.stack([p[1] for p in pairs])
    loss_fn = SiamFCLoss(cfg)
    opt = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.9)
    hist = fit(net, loss_fn, [(z, x)] * 2, epochs=2, optimizer=opt, progress=False)
    assert hist["train_loss"][1] < hist["train_loss"][0]


# ---------------------------------------------------------------------------------------------- tracker


def _tiny_tracker(**kw):
    torch.manual_seed(0)
    return SiamFCTracker(SiamFCNet(0.25), **kw)


def test_tracker_on_moving_square_returns_finite_boxes():
    tracker = _tiny_tracker()
    frame, box = _square_frame(50, 50)
    tracker.init(frame, box)
    assert tracker.template.shape == tracker.template0.shape == (1, 64, 6, 6)
    for k in range(1, 6):
        out = tracker.update(_square_frame(50 + 3 * k, 50 + 2 * k)[0])
        assert out.shape == (4,) and np.all(np.isfinite(out)) and out[2] > 0 and out[3] > 0
    res = tracker.last_result
    assert res.responses.shape == (3, 17, 17) and res.response.shape == (272, 272)
    assert res.crops.shape == (3, 255, 255, 3) and tuple(res.features.shape) == (3, 64, 22, 22)


def test_tracker_is_deterministic():
    frames = [_square_frame(50 + 4 * k, 60 - 2 * k)[0] for k in range(5)]
    box = _square_frame(50, 60)[1]
    outs = []
    for _ in range(2):
        tracker = _tiny_tracker()
        tracker.init(frames[0], box)
        outs.append(np.stack([tracker.update(f) for f in frames[1:]]))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_tracker_geometry_with_identity_response():
    """A template that scores the true target highest must recover a pure translation exactly (up to 1 px)."""
    tracker = _tiny_tracker(num_scales=1, window_influence=0.0)
    frame0, box0 = _square_frame(60, 60)
    tracker.init(frame0, box0)

    # Replace the network's answer by a peak at a known displacement: 2 cells right, 1 down.
    def fake_head(z, x):
        out = torch.zeros(x.shape[0], 1, 17, 17)
        out[:, 0, 9, 10] = 10.0
        return out

    tracker.net.head.forward = fake_head
    out = tracker.update(frame0)
    step = tracker.x_size / 255 * 8  # image pixels per score cell
    np.testing.assert_allclose(out[:2] - box0[:2], [2 * step, 1 * step], atol=1.0)


def test_tracker_update_hook_and_options():
    calls = []

    class Recorder:
        def reset(self, tracker, image, box):
            calls.append(("reset", tracker.frame_index))

        def step(self, tracker, image, box, result):
            calls.append(("step", tracker.frame_index, result.score))
            return tracker.template * 0.5

    tracker = _tiny_tracker(updater=Recorder(), update_interval=2, window_influence=0.3)
    assert tracker.config.window_influence == 0.3
    frame, box = _square_frame(50, 50)
    tracker.init(frame, box)
    for _ in range(4):
        tracker.update(frame)
    assert [c[:2] for c in calls] == [("reset", 0), ("step", 2), ("step", 4)]
    torch.testing.assert_close(tracker.template, tracker.template0 * 0.25)
    # the threshold gate: nothing passes an impossible threshold
    calls.clear()
    tracker = _tiny_tracker(updater=Recorder(), confidence_threshold=float("inf"))
    tracker.init(frame, box)
    tracker.update(frame)
    assert calls == [("reset", 0)]
    with pytest.raises(ValueError):
        _tiny_tracker(update_interval=0)
    with pytest.raises(ValueError):
        _tiny_tracker(num_scales=2)
    with pytest.raises(TypeError, match="window_influnce"):
        _tiny_tracker(window_influnce=0.1)


def test_make_tracker_registry_with_untrained_net():
    from mtl.eval import make_tracker

    tracker = make_tracker("siamfc", checkpoint=None, num_scales=5)
    assert isinstance(tracker, SiamFCTracker) and tracker.name == "siamfc" and tracker.config.num_scales == 5
    frame, box = _square_frame(50, 50)
    tracker.init(frame, box)
    assert np.all(np.isfinite(tracker.update(frame)))
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        make_tracker("siamfc", checkpoint="/nonexistent/siamfc.pt")


def test_speed_comparison_keys():
    class Seq:
        boxes = np.array([_square_frame(50 + 2 * k, 50)[1] for k in range(4)])

        def __len__(self):
            return 4

        def frame(self, i):
            return _square_frame(50 + 2 * i, 50)[0]

    rep = speed_comparison(_tiny_tracker(), Seq(), max_frames=3)
    assert rep["frames"] == 3 and rep["tracker_fps"] > 0 and rep["backbone_fps"] > 0
    assert set(rep["openmp"]) == {"GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "set_by_mtl", "in_effect"}


def test_response_equals_the_textbook_computation_bit_for_bit():
    """respond() reuses the scale maxima and a precomputed window term; the map, peak and score must be
    exactly those of the plain formula on the raw responses (the stored runs rely on identical boxes)."""
    from mtl.ops import upsample_maps
    from mtl.siamfc import penalize_scale_changes

    tracker = _tiny_tracker(num_scales=5)
    frame, box = _square_frame(50, 50)
    tracker.init(frame, box)
    for x in (53, 57, 60):
        tracker.update(_square_frame(x, 48)[0])
        r, c = tracker.last_result, tracker.config
        up = np.stack([upsample_maps(m, tracker.upscale_size) for m in r.responses])
        k = int(np.argmax(penalize_scale_changes(up.reshape(len(up), -1).max(axis=1), tracker.scale_penalties)))
        plain = up[k] - up[k].min()
        plain /= plain.sum() + 1e-16
        plain = (1 - c.window_influence) * plain + c.window_influence * tracker.window
        assert r.scale_index == k and r.score == float(up[k].max())
        assert np.array_equal(r.response, plain)
        assert tuple(r.peak[::-1]) == np.unravel_index(int(np.argmax(plain)), plain.shape)


def test_config_train_key_excludes_tracking_options():
    a, b = SiamFCConfig(), SiamFCConfig(window_influence=0.0, num_scales=5)
    assert a.train_key() == b.train_key()
    assert a.train_key() != dataclasses.replace(a, width=0.5).train_key()


def _write_otb_folder(root, n_frames=6, size=(97, 143)):
    """A tiny OTB-layout dataset of a moving textured square on frames of an odd size (H, W)."""
    import cv2

    seq_dir = root / "Square" / "img"
    seq_dir.mkdir(parents=True)
    lines = []
    for i in range(n_frames):
        frame, box = _square_frame(40 + 3 * i, 45 + i, side=24, size=size)
        cv2.imwrite(str(seq_dir / f"{i + 1:04d}.jpg"), frame[:, :, ::-1])
        lines.append(",".join(str(int(v)) for v in box))
    (root / "Square" / "groundtruth_rect.txt").write_text("\n".join(lines) + "\n")


def test_checkpoint_path_round_trip_and_cli_benchmark(tmp_path, monkeypatch):
    from mtl import cli
    from mtl import eval as ev
    from mtl.cache import save_checkpoint
    from mtl.siamfc import load_siamfc, make_siamfc_tracker

    # a checkpoint file made by another width is rebuilt from its stored training config
    torch.manual_seed(1)
    cfg = SiamFCConfig(width=0.125)
    net = SiamFCNet.from_config(cfg)
    ckpt = tmp_path / "siamfc-tiny.pt"
    save_checkpoint(ckpt, net.state_dict(), cfg.train_key(), {"config": cfg.train_key()})
    loaded = load_siamfc(ckpt)
    assert loaded.backbone.out_channels == net.backbone.out_channels
    for a, b in zip(loaded.state_dict().values(), net.state_dict().values()):
        assert torch.equal(a, b)

    # `mtl benchmark --tracker siamfc` on an OTB folder of real (odd-sized) frames
    _write_otb_folder(tmp_path / "otb")
    monkeypatch.setitem(ev.TRACKERS, "siamfc", lambda **kw: make_siamfc_tracker(checkpoint=ckpt, **kw))
    out = tmp_path / "results"
    rc = cli.main(["benchmark", "--tracker", "siamfc", "--dataset", f"otb:{tmp_path / 'otb'}", "--out", str(out),
                   "--no-progress"])
    assert rc == 0
    files = list(out.rglob("Square.txt"))
    assert len(files) == 1
    boxes = ev.read_boxes(files[0], 6)
    assert np.all(np.isfinite(boxes)) and np.all(boxes[:, 2:] > 0)
    np.testing.assert_allclose(boxes[0], _square_frame(40, 45, side=24)[1])  # frame 0 is the given box


def test_scale_penalty_is_a_penalty_for_negative_peaks_too():
    from mtl.siamfc import penalize_scale_changes

    penalties = np.array([0.97, 1.0, 0.97])
    # positive peaks: the reference rule (multiply)
    np.testing.assert_allclose(penalize_scale_changes([2.0, 1.0, 3.0], penalties), [1.94, 1.0, 2.91])
    # negative peaks: a changed scale must not gain from the penalty
    out = penalize_scale_changes([-2.0, -2.0, -2.0], penalties)
    assert out[1] == -2.0 and out[0] < -2.0 and out[2] < -2.0
    assert int(np.argmax(out)) == 1  # equal raw peaks: the unchanged scale wins, as with positive peaks
    assert int(np.argmax(penalize_scale_changes([2.0, 2.0, 2.0], penalties))) == 1


def test_backbone_init_options():
    from mtl.backbones import AlexNetV1

    torch.manual_seed(0)
    xavier = AlexNetV1(0.25, "xavier").conv1[0].weight.detach()
    torch.manual_seed(0)
    kaiming = AlexNetV1(0.25, "kaiming").conv1[0].weight.detach()
    fan_in, fan_out = 3 * 11 * 11, xavier.shape[0] * 11 * 11
    bound = (6 / (fan_in + fan_out)) ** 0.5
    assert float(xavier.abs().max()) <= bound and not torch.equal(xavier, kaiming)
    with pytest.raises(ValueError, match="init"):
        AlexNetV1(0.25, "orthogonal")

"""Tests of CFNet (mtl.cfnet): the CF layer against the direct solve, shapes, gradients, the tracker."""
import numpy as np
import pytest
import torch

from mtl.cf import solve_cf, solve_cf_direct
from mtl.cfnet import (CFNetConfig, CFNetNet, CFNetPairTransform, CFNetTracker, CorrelationFilterLayer,
                       make_cfnet_tracker)
from mtl.eval import make_tracker
from mtl.siamfc import SiamFCConfig, SiamFCLoss
from mtl.updaters import EMAUpdater, GroundTruthTemplateUpdater


def _frame(cx=80, cy=60):
    img = np.full((120, 160, 3), 50, np.uint8)
    img[cy - 15:cy + 15, cx - 15:cx + 15] = (220, 80, 40)
    return img


def test_cf_layer_equals_solve_cf_on_windowed_features_and_the_direct_solve():
    torch.manual_seed(0)
    layer = CorrelationFilterLayer(feature_size=8, template_size=4, label_sigma=1.0, lam_init=0.5).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    w = layer.filter(x)
    windowed = x * layer.window
    torch.testing.assert_close(w, solve_cf(windowed, layer.label, layer.lam.item()), rtol=0, atol=0)
    direct = solve_cf_direct(windowed, layer.label, layer.lam.item())
    assert (w - direct).abs().max() < 1e-10
    crop = layer(x)
    assert crop.shape == (2, 3, 4, 4)
    torch.testing.assert_close(crop, w[..., 2:6, 2:6])
    assert float(layer.window.max()) == pytest.approx(1.0)


def test_cf_layer_gradcheck_wrt_features_and_lambda():
    torch.manual_seed(0)
    layer = CorrelationFilterLayer(feature_size=6, template_size=2, label_sigma=1.0, lam_init=0.3).double()
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: layer(t), (x,))
    log_lam = layer.log_lam.detach().clone().requires_grad_(True)

    def of_lam(ll):
        return solve_cf(x.detach() * layer.window, layer.label, ll.exp())[..., 2:4, 2:4]

    assert torch.autograd.gradcheck(of_lam, (log_lam,))


def test_cf_layer_rejects_bad_sizes():
    with pytest.raises(ValueError):
        CorrelationFilterLayer(feature_size=22, template_size=5)
    with pytest.raises(ValueError):
        CorrelationFilterLayer(feature_size=8, template_size=4)(torch.zeros(1, 2, 9, 9))


def test_cfnet_forward_shapes_and_gradient_reaches_backbone():
    torch.manual_seed(0)
    net = CFNetNet(width=0.25)
    z = torch.rand(2, 3, 255, 255) * 255
    x = torch.rand(2, 3, 239, 239) * 255
    assert net.template(z).shape == (2, 64, 6, 6)
    scores = net(z, x)
    assert scores.shape == (2, 1, 15, 15)
    loss = SiamFCLoss()(net, (z, x))
    loss.backward()
    assert net.backbone.conv1[0].weight.grad.abs().sum() > 0
    for p in (net.cf.log_lam, net.head.scale, net.head.bias):
        assert p.grad is not None and torch.isfinite(p.grad) and p.grad != 0


def test_cfnet_pair_transform_crops_exemplar_like_the_search_region():
    cfg = SiamFCConfig()
    z, x = CFNetPairTransform(cfg, augment=False)(_frame(), [65, 45, 30, 30], _frame(90, 70), [75, 55, 30, 30])
    assert z.shape == (3, 255, 255) and x.shape == (3, 239, 239)


def test_cfnet_tracker_template_is_the_cropped_filter_and_updaters_apply():
    torch.manual_seed(0)
    net = CFNetNet(width=0.25).eval()
    tracker = CFNetTracker(net, num_scales=1, response_up=4, updater=EMAUpdater(0.5))
    img, box = _frame(), np.array([65.0, 45.0, 30.0, 30.0])
    tracker.init(img, box)
    crop = tracker.exemplar_crop(img, box)  # 127 crop; CFNet's exemplar is the 255 one over a region twice as wide
    assert crop.shape == (127, 127, 3)
    assert tracker.template0.shape == (1, 64, 6, 6)
    from mtl.ops import context_size, crop_and_resize, image_to_tensor
    side = context_size(box[2:], 0.5) * 255 / 127
    big = crop_and_resize(img, box[:2] + (box[2:] - 1) / 2, side, 255)
    with torch.no_grad():
        expected = net.cf(net.backbone(image_to_tensor(big)))
    torch.testing.assert_close(tracker.template0, expected)
    t0 = tracker.template.clone()
    out = tracker.update(_frame(84, 62))
    assert np.all(np.isfinite(out)) and not torch.equal(tracker.template, t0)


def test_cfnet_registry():
    t = make_tracker("cfnet", checkpoint=None)
    assert isinstance(t, CFNetTracker) and t.name == "cfnet"
    oracle = make_tracker("cfnet_gt_template", checkpoint=None)
    assert isinstance(oracle.updater, GroundTruthTemplateUpdater) and hasattr(oracle, "set_sequence")
    assert make_cfnet_tracker(checkpoint=None, cfnet_config=CFNetConfig(lam_init=3.0)).net.cf.lam.item() == \
        pytest.approx(3.0)
    with pytest.raises(FileNotFoundError, match="cfnet.pt"):
        make_tracker("cfnet", checkpoint="/nonexistent/cfnet.pt")

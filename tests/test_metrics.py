"""mtl.metrics: hand-computed cases (always) and parity with the got10k toolkit (when installed)."""
import numpy as np
import pytest

from mtl import metrics


def random_boxes(rng, n, size=200.0):
    xy = rng.uniform(-20, size, (n, 2))
    wh = rng.uniform(1, 80, (n, 2))
    return np.concatenate([xy, wh], axis=1)


def jittered(rng, gt, scale):
    out = gt.copy()
    out[:, :2] += rng.normal(0, scale, (len(gt), 2)) * gt[:, 2:]
    out[:, 2:] *= np.exp(rng.normal(0, scale, (len(gt), 2)))
    return out


# ----------------------------------------------------------------- hand-computed cases

def test_iou_hand_computed():
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], float)
    pred = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [10, 0, 10, 10], [0, 0, 5, 5]], float)
    # identical; half overlap 50/150; touching edges; nested 25/100
    np.testing.assert_allclose(metrics.iou(pred, gt), [1.0, 1 / 3, 0.0, 0.25], atol=1e-12)


def test_invalid_predictions_are_misses():
    gt = np.array([[0, 0, 10, 10]] * 3, float)
    pred = np.array([[0, 0, 0, 0], [np.nan, 0, 10, 10], [0, 0, -5, 10]], float)
    assert np.all(metrics.iou(pred, gt) == 0)
    assert np.all(np.isinf(metrics.center_error(pred, gt)))


def test_center_convention_and_error():
    # centre = x + (w - 1) / 2: a 10 px box at x=0 is centred on pixel 4.5
    np.testing.assert_allclose(metrics.box_centers([[0, 0, 10, 4]]), [[4.5, 1.5]])
    err = metrics.center_error([[3, 4, 10, 10]], [[0, 0, 10, 10]])
    np.testing.assert_allclose(err, [5.0])
    nerr = metrics.normalized_center_error([[3, 4, 10, 10]], [[0, 0, 10, 20]])
    # centres (7.5, 8.5) and (4.5, 9.5): offset (3, -1) divided by the GT size (10, 20)
    np.testing.assert_allclose(nerr, [np.hypot(0.3, 0.05)])


def test_perfect_tracker_auc_is_20_over_21():
    gt = random_boxes(np.random.default_rng(0), 30)
    m = metrics.otb_sequence_metrics(gt, gt)
    assert m["auc"] == pytest.approx(20 / 21, abs=1e-12)
    assert m["precision"] == 1.0 and m["norm_precision"] == 1.0
    np.testing.assert_array_equal(m["success_curve"][:-1], 1.0)
    assert m["success_curve"][-1] == 0.0  # iou > 1 never holds (strict)


def test_success_curve_strict_and_precision_inclusive():
    # IoU exactly 0.5 does not pass the 0.5 threshold; error exactly 20 px passes 20 px
    curve = metrics.success_curve([0.5])
    assert curve[10] == 0.0 and curve[9] == 1.0
    prec = metrics.precision_curve([20.0])
    assert prec[20] == 1.0 and prec[19] == 0.0


def test_hand_computed_sequence():
    # 4 frames: frame 0 is replaced by GT (iou 1); then iou 1/3, 0, 0.25
    gt = np.array([[0, 0, 10, 10]] * 4, float)
    pred = np.array([[50, 50, 1, 1], [5, 0, 10, 10], [10, 0, 10, 10], [0, 0, 5, 5]], float)
    m = metrics.otb_sequence_metrics(pred, gt)
    ious = np.array([1, 1 / 3, 0, 0.25])
    expected = [np.mean(ious > t) for t in np.linspace(0, 1, 21)]
    np.testing.assert_allclose(m["success_curve"], expected)
    assert m["auc"] == pytest.approx(np.mean(expected))
    # centre errors 0, 5, 10, hypot(2.5, 2.5)=3.54 -> all <= 20
    assert m["precision"] == 1.0
    assert m["precision_curve"][4] == 0.5  # errors 0 and 3.54 are <= 4


def test_ao_sr_frame_weighted_and_got_frames():
    gt = np.array([[0, 0, 10, 10]] * 5, float)
    pred = np.array([[90, 90, 5, 5], [5, 0, 10, 10], [0, 0, 10, 10], [0, 0, 5, 5], [0, 0, 10, 10]], float)
    visible = np.array([True, True, True, True, False])
    ious = metrics.got10k_frame_ious(pred, gt, visible=visible)  # frame 0 and the invisible frame 4 dropped
    np.testing.assert_allclose(ious, [1 / 3, 1.0, 0.25], atol=1e-12)
    ao, sr = metrics.ao_sr(np.concatenate([ious, [0.75]]))
    assert ao == pytest.approx((1 / 3 + 1 + 0.25 + 0.75) / 4)
    assert sr[0.5] == 0.5 and sr[0.75] == 0.25  # 0.75 is not > 0.75


def test_speed_conventions():
    assert metrics.sequence_fps([0.0, 0.1, 0.5, np.nan]) == pytest.approx((10 + 2) / 2)
    assert metrics.otb_fps([10.0, -1.0, 20.0]) == 15.0
    assert metrics.pooled_fps([[0.1], [0.5, 0.5]]) == pytest.approx((10 + 2 + 2) / 3)
    assert metrics.sequence_fps([0.0]) == -1.0
    # 3 frames in 1.1 s; mean(1/t) would say (10 + 2 + 2) / 3 = 4.67 fps
    assert metrics.throughput_fps([[0.1], [0.5, 0.5, np.nan, 0.0]]) == pytest.approx(3 / 1.1)
    assert metrics.throughput_fps([]) == -1.0


def test_throughput_charges_sporadic_work_but_mean_inverse_time_does_not():
    # 10 ms per frame, plus 1 s of optimization on every 10th frame: 10 frames take 1.1 s
    times = np.full(100, 0.01)
    times[::10] += 1.0
    assert metrics.throughput_fps([times]) == pytest.approx(100 / 11.0)
    assert metrics.sequence_fps(times) > 0.9 * metrics.sequence_fps(np.full(100, 0.01))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="same shape"):
        metrics.iou(np.zeros((3, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        metrics.center_error(np.zeros((3, 5)), np.zeros((3, 5)))


# ----------------------------------------------------------------- got10k toolkit parity

@pytest.fixture(scope="module")
def got10k():
    return pytest.importorskip("got10k")


def test_rect_iou_and_center_error_parity(got10k):
    from got10k.utils.metrics import center_error, rect_iou

    rng = np.random.default_rng(1)
    gt = random_boxes(rng, 2000)
    pred = np.concatenate([jittered(rng, gt[:1000], 0.3), random_boxes(rng, 1000)])
    np.testing.assert_allclose(metrics.iou(pred, gt), rect_iou(pred.copy(), gt.copy()), rtol=0, atol=1e-9)
    bound = (180, 150)
    np.testing.assert_allclose(metrics.iou(pred, gt, bound=bound),
                               rect_iou(pred.copy(), gt.copy(), bound=bound), rtol=0, atol=1e-9)
    np.testing.assert_allclose(metrics.center_error(pred, gt), center_error(pred, gt), rtol=0, atol=1e-9)


def test_otb_report_parity(got10k):
    from got10k.experiments.otb import ExperimentOTB
    from got10k.utils.metrics import center_error, rect_iou

    class Cfg:  # _calc_curves only reads these two attributes
        nbins_iou, nbins_ce = 21, 51

    rng = np.random.default_rng(2)
    ours_s, ours_p, theirs_s, theirs_p = [], [], [], []
    for k in range(8):
        gt = random_boxes(rng, int(rng.integers(20, 200)))
        pred = jittered(rng, gt, 0.05 * (k + 1))
        m = metrics.otb_sequence_metrics(pred, gt)
        p = pred.copy()
        p[0] = gt[0]  # as ExperimentOTB.report does
        s, c = ExperimentOTB._calc_curves(Cfg(), rect_iou(p, gt), center_error(p, gt))
        ours_s.append(m["success_curve"]), ours_p.append(m["precision_curve"])
        theirs_s.append(s), theirs_p.append(c)
        np.testing.assert_allclose(m["success_curve"], s, atol=1e-9)
        np.testing.assert_allclose(m["precision_curve"], c, atol=1e-9)
    assert metrics.auc(np.mean(ours_s, 0)) == pytest.approx(np.mean(np.mean(theirs_s, 0)), abs=1e-9)
    assert np.mean(ours_p, 0)[20] == pytest.approx(np.mean(theirs_p, 0)[20], abs=1e-9)
    # perfect tracker through the toolkit's own code: 20/21
    gt = random_boxes(rng, 50)
    s, _ = ExperimentOTB._calc_curves(Cfg(), rect_iou(gt, gt.copy()), center_error(gt, gt))
    assert np.mean(s) == pytest.approx(20 / 21, abs=1e-12)


def test_got10k_report_parity(got10k):
    from got10k.experiments.got10k import ExperimentGOT10k
    from got10k.utils.metrics import rect_iou

    rng = np.random.default_rng(3)
    bound = (320, 240)
    ours, theirs, times = [], [], []
    for k in range(6):
        n = int(rng.integers(10, 100))
        gt = random_boxes(rng, n, size=300)
        pred = jittered(rng, gt, 0.1 * (k + 1))
        cover = rng.integers(0, 9, n)  # GOT-10k cover.label: 0 = absent
        ours.append(metrics.got10k_frame_ious(pred, gt, visible=cover > 0, bound=bound))
        theirs.append(rect_iou(pred[1:].copy(), gt[1:].copy(), bound=bound)[cover[1:] > 0])
        times.append(rng.uniform(0.001, 0.05, n))
    ao, sr = metrics.ao_sr(np.concatenate(ours))
    t_ao, t_sr, t_speed, _ = ExperimentGOT10k._evaluate(None, np.concatenate(theirs), np.concatenate(times))
    assert ao == pytest.approx(t_ao, abs=1e-9)
    assert sr[0.5] == pytest.approx(t_sr, abs=1e-9)
    assert metrics.pooled_fps(times) == pytest.approx(t_speed, rel=1e-12)

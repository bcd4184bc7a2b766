"""The closed-form correlation filter against a direct ridge-regression solve and finite differences."""
import pytest
import torch

from mtl.cf import circular_xcorr, gaussian_label, solve_cf, solve_cf_direct


def test_closed_form_matches_direct_ridge_regression():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    y = gaussian_label(6, 5, sigma=1.0, dtype=torch.float64)
    w_fourier = solve_cf(x, y, lam=0.1)
    w_direct = solve_cf_direct(x, y, lam=0.1)
    torch.testing.assert_close(w_fourier, w_direct, rtol=1e-9, atol=1e-10)


def test_filter_reproduces_label_when_regularisation_vanishes():
    torch.manual_seed(1)
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    y = gaussian_label(8, 8, sigma=1.5, dtype=torch.float64)
    response = circular_xcorr(solve_cf(x, y, lam=1e-8), x)
    torch.testing.assert_close(response[0], y, rtol=0, atol=1e-5)
    # with strong regularisation the filter shrinks towards zero
    assert solve_cf(x, y, lam=1e6).abs().max() < 1e-3


def test_circular_xcorr_matches_definition():
    torch.manual_seed(2)
    w, x = torch.randn(1, 2, 4, 3, dtype=torch.float64), torch.randn(1, 2, 4, 3, dtype=torch.float64)
    expected = torch.zeros(4, 3, dtype=torch.float64)
    for uy in range(4):
        for ux in range(3):
            expected[uy, ux] = (w[0] * torch.roll(x[0], shifts=(-uy, -ux), dims=(1, 2))).sum()
    torch.testing.assert_close(circular_xcorr(w, x)[0], expected)


def test_gradient_matches_finite_differences():
    torch.manual_seed(3)
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    y = gaussian_label(5, 4, sigma=1.0, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: solve_cf(a, b, lam=0.5), (x, y), eps=1e-6, atol=1e-6)


def test_label_peaks_at_zero_shift_and_bad_inputs_raise():
    y = gaussian_label(7, 9, sigma=1.0)
    assert y[0, 0] == 1 and y.argmax() == 0 and torch.allclose(y[1, 0], y[-1, 0])
    with pytest.raises(ValueError, match="features"):
        solve_cf(torch.zeros(3, 4, 4), torch.zeros(4, 4), 1.0)
    with pytest.raises(ValueError, match="lam"):
        solve_cf(torch.zeros(1, 1, 4, 4), torch.zeros(4, 4), 0.0)
    with pytest.raises(ValueError, match="label shape"):
        solve_cf(torch.zeros(1, 1, 4, 4), torch.zeros(3, 4), 1.0)

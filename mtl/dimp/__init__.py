"""DiMP (Bhat, Danelljan et al., ICCV 2019): a target model predicted by a learned steepest-descent optimizer.

pytracking-style parts, one module each:

* :mod:`mtl.dimp.filter`: the target model's convolution and its transpose (``apply_filter``,
  ``apply_filter_transpose``); every shape is documented there.
* :mod:`mtl.dimp.loss`: the discriminative loss: radial basis, learned label / mask / weight maps
  (``LearnedLossMaps``), the fixed L2-hinge baseline (``FixedHingeMaps``), the test-frame loss.
* :mod:`mtl.dimp.optimizer`: Gauss-Newton steepest descent (``SteepestDescent``) and Table 1's
  fixed-step ``GradientDescent``.
* :mod:`mtl.dimp.initializer`: classification features with ``InstanceL2Norm``, ``roi_pool``
  (``grid_sample``), the ``FilterInitializer``.
* :mod:`mtl.dimp.data`: crop geometry (boxes in feature cells), jittered train/test crops, the feature bank.
* :mod:`mtl.dimp.net`: ``DiMPConfig`` (the switches of Tables 1-2), ``DiMPNet``, the training step.
* :mod:`mtl.dimp.train`: ``train_dimp`` / ``load_dimp`` on the bank of the frozen SiamFC backbone; Table 2's
  "+FT" (``FineTune``: conv4-5 trained too) by ``train_dimp_ft`` / ``load_dimp_ft``.
* :mod:`mtl.dimp.tracker`: the online tracker (``DiMPTracking`` holds every parameter), registered as ``dimp``.
* :mod:`mtl.dimp.checks`: the self-checks notebook 05 prints and the tests assert.
"""
from mtl.dimp.filter import apply_filter, apply_filter_transpose
from mtl.dimp.initializer import ClassificationFeatures, FilterInitializer, InstanceL2Norm, roi_pool
from mtl.dimp.loss import (FixedHingeMaps, LearnedLossMaps, RadialBasis, distance_map, gaussian_label, hinge_mse,
                           nominal_label_sigma, residual)
from mtl.dimp.net import VARIANTS, DiMPConfig, DiMPNet, FineTune, config_variant
from mtl.dimp.optimizer import GradientDescent, SteepestDescent, gauss_newton_step, gradient_and_jg, loss_value
from mtl.dimp.tracker import DiMPTracker, DiMPTracking, make_dimp_tracker
from mtl.dimp.train import load_dimp, load_dimp_ft, train_dimp, train_dimp_ft

__all__ = ["apply_filter", "apply_filter_transpose", "ClassificationFeatures", "FilterInitializer", "InstanceL2Norm",
           "roi_pool", "FixedHingeMaps", "LearnedLossMaps", "RadialBasis", "distance_map", "gaussian_label",
           "hinge_mse", "nominal_label_sigma", "residual", "GradientDescent", "SteepestDescent", "gauss_newton_step",
           "gradient_and_jg", "loss_value", "VARIANTS", "DiMPConfig", "DiMPNet", "config_variant", "DiMPTracker",
           "DiMPTracking", "make_dimp_tracker", "load_dimp", "train_dimp", "FineTune", "load_dimp_ft", "train_dimp_ft"]

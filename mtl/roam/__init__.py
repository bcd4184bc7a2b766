"""ROAM and ROAM++ (Yang, Xu, Hu, Chai & Chan, CVPR 2020): a recurrent neural optimizer that updates a resizable
tracking model (notebook 06; registered trackers ``roam`` and ``roampp``).

* :mod:`mtl.roam.model`: the filter-size rule, bilinear filter resizing, the functional response and (ROAM++)
  box-regression branches, anchors and box deltas, :class:`ThetaLayout` (the parameters as one coordinate vector).
* :mod:`mtl.roam.optimizer`: gradient preprocessing, the coordinate-wise :class:`CoordinateLSTM`, random
  filter scaling.
* :mod:`mtl.roam.loss`: the response label, the masked, weighted response loss and ROAM++'s regression loss.
* :mod:`mtl.roam.data`: meta-training clips (9 stretched copies of frame 0 + 30 frames) as a feature bank.
* :mod:`mtl.roam.meta`: :class:`ROAMConfig` and :class:`ROAMLearner` (``theta_0``, ``lambda_0``, the optimizer,
  the unroll with a second-order first step and first-order LSTM steps).
* :mod:`mtl.roam.train`: the rate calibration on val, :func:`train_roam` (config-keyed checkpoints), the notebook's
  variants and the unroll on val clips (Fig. 7).
* :mod:`mtl.roam.tracker`: :class:`ROAMTracker` (3-scale search or box regression, the sample buffer, updates every
  ``tau`` frames, learned or SGD rates), the oracle version and the registry factories.
* :mod:`mtl.roam.checks`: self-checks for the notebook and the unit tests.
"""
from mtl.roam.loss import response_label, response_loss
from mtl.roam.model import ThetaLayout, filter_shape, filter_size, resize_filter, response
from mtl.roam.optimizer import CoordinateLSTM, draw_rfs, lstm_inputs, preprocess_gradient, rfs_theta_step

__all__ = ["response_label", "response_loss", "ThetaLayout", "filter_shape", "filter_size", "resize_filter",
           "response", "CoordinateLSTM", "draw_rfs", "lstm_inputs", "preprocess_gradient", "rfs_theta_step"]

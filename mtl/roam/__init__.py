"""ROAM (Yang, Xu, Hu, Chai & Chan, CVPR 2020): a recurrent neural optimizer that updates a resizable
tracking model (notebook 06; in progress: the parts below exist, the meta-training and the tracker do not yet).

* :mod:`mtl.roam.model`: the filter-size rule, bilinear filter resizing, the functional response model
  and :class:`ThetaLayout` (its parameters as one coordinate vector).
* :mod:`mtl.roam.optimizer`: gradient preprocessing, the coordinate-wise :class:`CoordinateLSTM`, random
  filter scaling.
* :mod:`mtl.roam.loss`: the response label and the masked, weighted response loss.
* :mod:`mtl.roam.checks`: self-checks for the notebook and the unit tests.
"""
from mtl.roam.loss import response_label, response_loss
from mtl.roam.model import ThetaLayout, filter_shape, filter_size, resize_filter, response
from mtl.roam.optimizer import CoordinateLSTM, draw_rfs, lstm_inputs, preprocess_gradient, rfs_theta_step

__all__ = ["response_label", "response_loss", "ThetaLayout", "filter_shape", "filter_size", "resize_filter",
           "response", "CoordinateLSTM", "draw_rfs", "lstm_inputs", "preprocess_gradient", "rfs_theta_step"]

"""Learning to Update (Li et al., IEEE TIP 2019): a recurrent, meta-learned target-model updater (notebook 04).

Parts, pytracking-style:

* :mod:`mtl.lu.net`: :class:`LUConfig`, the ConvGRU / ConvLSTM cells and :class:`LUNet` (the updater
  ``u_φ``: stacked cells and the conv that writes the target model).
* :mod:`mtl.lu.features`: cached search features of training clips and exemplars cut from them.
* :mod:`mtl.lu.train`: truncated-BPTT windows, the unroll with estimated positions and interval
  update, the anchor loss, :func:`train_lu` / :func:`load_lu` (config-keyed checkpoints).
* :mod:`mtl.lu.tracker`: :class:`LUUpdater` on SiamFC's or CFNet's tracker, registered as ``siamfc_lu`` and
  ``cfnet_lu``.
* :mod:`mtl.lu.checks`: the self-checks the notebook and the unit tests run.
"""
from mtl.lu.net import LU_QUICK_OVERRIDES, ConvGRUCell, ConvLSTMCell, LUConfig, LUNet, config_variant
from mtl.lu.features import CorrelationFilterExemplar, recentred_features
from mtl.lu.tracker import LUUpdater, make_cfnet_lu_tracker, make_lu_tracker
from mtl.lu.train import (BASES, ClipWindows, LUUnroll, anchor_loss, base_network, clip_data, feature_scale, fixed_model_loss, load_lu, train_key,
                          train_lu)

__all__ = ["LU_QUICK_OVERRIDES", "ConvGRUCell", "ConvLSTMCell", "LUConfig", "LUNet", "config_variant", "LUUpdater",
           "make_lu_tracker", "make_cfnet_lu_tracker", "CorrelationFilterExemplar", "recentred_features", "BASES",
           "base_network", "ClipWindows", "LUUnroll", "anchor_loss", "clip_data", "feature_scale", "fixed_model_loss", "load_lu",
           "train_key", "train_lu"]

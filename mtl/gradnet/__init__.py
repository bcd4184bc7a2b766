"""GradNet (Li et al., ICCV 2019): a template updated from the gradient of its own tracking loss (notebook 03).

Parts, pytracking-style:

* :mod:`mtl.gradnet.net`: :class:`GradNetConfig`, :class:`GradNetNet` (frozen search branch, template
  branch f2 / U1, update branch U2, the calibrated gradient scale ``c``), template generalisation.
* :mod:`mtl.gradnet.train`: pairs with shifted labels, the loss ``L*``, :func:`train_gradnet` /
  :func:`load_gradnet` (config-keyed checkpoints, per-epoch snapshots).
* :mod:`mtl.gradnet.tracker`: :class:`GradNetUpdater` on SiamFC's tracker; registered as
  ``siamfc_gradnet`` and the Table 3 variants ``siamfc_gradnet_wo_m``, ``_wo_u``, ``_wo_mg``, ``_2u``.
* :mod:`mtl.gradnet.checks`: the self-checks the notebook and the unit tests run.
"""
from mtl.gradnet.net import GRADNET_QUICK_OVERRIDES, GradNetConfig, GradNetNet, GradNetOutput, UpdateBranch, config_variant
from mtl.gradnet.tracker import DEFAULT_TRACKING, VARIANTS, GradNetUpdater, make_gradnet_tracker
from mtl.gradnet.train import (GradNetLoss, GradNetPairTransform, gradnet_loaders, load_gradnet, load_snapshots, snapshots_path,
                               train_gradnet, train_key)

__all__ = ["GRADNET_QUICK_OVERRIDES", "GradNetConfig", "GradNetNet", "GradNetOutput", "UpdateBranch", "config_variant",
           "DEFAULT_TRACKING", "VARIANTS", "GradNetUpdater", "make_gradnet_tracker", "GradNetLoss",
           "GradNetPairTransform", "gradnet_loaders", "load_gradnet", "load_snapshots", "snapshots_path", "train_gradnet", "train_key"]

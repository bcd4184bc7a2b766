"""mtl: learning to update visual object trackers, rebuilt step by step in notebooks.

The package holds what the numbered notebooks reuse; each notebook shows the key lines itself.
Modules are flat, one concept each (see README.md for the map).
"""
import os as _os
import sys as _sys

# Before torch loads libgomp (it reads its environment once, at load): after every parallel torch op
# libgomp's worker threads busy-wait for the next one: 300,000 turns of a spin loop by default, a millisecond
# or more.
# With as many torch threads as cores (2 in CI), the spinning worker holds the second core while the
# tracker's OpenCV crops and upsampling run right after the backbone, and they slow down. With a 20,000-spin
# wait, SiamFC's tracker / backbone speed ratio measured 0.807 instead of 0.779 and a SiamFC training epoch
# (one loader worker beside 2 torch threads) 72.5 s instead of 77.0 (benchmarks/README.md). A setting of the
# user's own (GOMP_SPINCOUNT or OMP_WAIT_POLICY) wins.
_OPENMP_SPIN_DEFAULT = "20000"
_SPIN_SET_HERE = "GOMP_SPINCOUNT" not in _os.environ and "OMP_WAIT_POLICY" not in _os.environ
if _SPIN_SET_HERE:
    _os.environ["GOMP_SPINCOUNT"] = _OPENMP_SPIN_DEFAULT
    _os.environ["MTL_SET_GOMP_SPINCOUNT"] = _OPENMP_SPIN_DEFAULT  # so that child processes (kernels, workers) know
_SPIN_SET_BY_MTL = ("GOMP_SPINCOUNT" in _os.environ
                    and _os.environ.get("MTL_SET_GOMP_SPINCOUNT") == _os.environ["GOMP_SPINCOUNT"])
_TORCH_LOADED_FIRST = "torch" in _sys.modules

from mtl.utils import ROOT, quick_mode, seed_everything, try_gpu  # noqa: E402  (after the setting above)

__version__ = "0.1.0"
__all__ = ["ROOT", "openmp_spin", "quick_mode", "seed_everything", "try_gpu", "__version__"]


def openmp_spin() -> dict:
    """How long torch's idle OpenMP threads spin in this process, and who decided it.

    Returns ``{"GOMP_SPINCOUNT": str | None, "OMP_WAIT_POLICY": str | None, "set_by_mtl": bool,
    "in_effect": bool}``. ``set_by_mtl``: the value is the one ``import mtl`` sets, here or in a parent
    process (``mtl reproduce`` for its notebook kernels). ``in_effect`` is False when torch was imported
    before ``mtl`` in a process where mtl set the value: libgomp had already read its environment, so the
    default spin applies. Speed measurements carry this so that timings of the two settings are not compared
    unknowingly.
    """
    return {"GOMP_SPINCOUNT": _os.environ.get("GOMP_SPINCOUNT"), "OMP_WAIT_POLICY": _os.environ.get("OMP_WAIT_POLICY"),
            "set_by_mtl": _SPIN_SET_BY_MTL, "in_effect": not (_SPIN_SET_HERE and _TORCH_LOADED_FIRST)}


def __getattr__(name: str):
    # mtl.track_video without importing OpenCV and the trackers at ``import mtl``
    if name == "track_video":
        from mtl.video import track_video

        return track_video
    raise AttributeError(f"module 'mtl' has no attribute {name!r}")

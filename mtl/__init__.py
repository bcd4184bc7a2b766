"""mtl: learning to update visual object trackers, rebuilt step by step in notebooks.

The package holds what the numbered notebooks reuse; each notebook shows the key lines itself.
Modules are flat, one concept each (see README.md for the map).
"""
from mtl.utils import ROOT, quick_mode, seed_everything, try_gpu

__version__ = "0.1.0"
__all__ = ["ROOT", "quick_mode", "seed_everything", "try_gpu", "__version__"]


def __getattr__(name: str):
    # mtl.track_video without importing OpenCV and the trackers at ``import mtl``
    if name == "track_video":
        from mtl.video import track_video

        return track_video
    raise AttributeError(f"module 'mtl' has no attribute {name!r}")

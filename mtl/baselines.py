"""Reference trackers that show what the metrics mean: trivial rows and one classical tracker.

* ``static``: the first box forever (what a tracker that has lost the target scores).
* ``noisy_gt``: the ground truth plus Gaussian noise (an *oracle*; the upper region of the plots).
* ``constant_velocity``: extrapolates the motion between frames 0 and 1 of the ground truth
  (an oracle for one step of motion, blind afterwards: how fast pure extrapolation drifts).
* ``opencv_mil``: OpenCV's MIL tracker (``cv2.TrackerMIL``), the classical tracker shipped by
  opencv-python without extra model files.

Oracle hook: a tracker that needs the ground truth defines ``set_sequence(seq)``; the runners in
:mod:`mtl.eval` call it before ``init`` on every sequence. Only reference rows may use it; a real
tracker must never define it.
"""
from __future__ import annotations

import numpy as np

from mtl.eval import register_tracker
from mtl.tracker import Tracker, as_box, as_rgb_array


@register_tracker("static")
class StaticTracker(Tracker):
    """Returns the initial box on every frame."""

    name = "static"

    def init(self, image, box) -> None:
        self.box = as_box(box)

    def update(self, image) -> np.ndarray:
        return self.box.copy()


class _OracleTracker(Tracker):
    """Base for trackers that read the ground truth through the oracle-only ``set_sequence`` hook."""

    def set_sequence(self, seq) -> None:
        """Oracle-only hook: receive the sequence (``seq.boxes`` ``(N, 4)``) before ``init``."""
        self.gt = np.asarray(seq.boxes, dtype=np.float64)

    def init(self, image, box) -> None:
        self.box = as_box(box)
        self.frame_index = 0
        if getattr(self, "gt", None) is None:
            raise RuntimeError(f"{self.name} is an oracle: call set_sequence(seq) before init")

    def _next_index(self) -> int:
        self.frame_index += 1
        if self.frame_index >= len(self.gt):
            raise IndexError(f"{self.name}: update called past the end of the sequence ({len(self.gt)} frames)")
        return self.frame_index


@register_tracker("noisy_gt")
class NoisyGTTracker(_OracleTracker):
    """Ground truth with noise: centre shifted by ``N(0, (noise * size)^2)``, w and h scaled by ``exp(N(0, noise^2))``.

    Stochastic: the noise comes from NumPy's global generator, which the runners seed per sequence
    (``mtl.seed_everything(seed)``), so a seed gives the same boxes again.
    """

    name = "noisy_gt"
    is_deterministic = False

    def fingerprint(self) -> dict:
        return {**super().fingerprint(), "noise": self.noise}

    def __init__(self, noise: float = 0.1, name: str | None = None):
        super().__init__(name=name)
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.noise = float(noise)
        self.gt = None

    def update(self, image) -> np.ndarray:
        g = self.gt[self._next_index()]
        size = g[2:] * np.exp(self.noise * np.random.randn(2))
        center = g[:2] + g[2:] / 2 + self.noise * g[2:] * np.random.randn(2)
        return np.concatenate([center - size / 2, size])


@register_tracker("constant_velocity")
class ConstantVelocityTracker(_OracleTracker):
    """Extrapolates the ground-truth displacement and size ratio from frame 0 to frame 1 forever.

    Without ``set_sequence`` it has no motion to extrapolate and raises in ``init``.
    """

    name = "constant_velocity"

    def __init__(self, name: str | None = None):
        super().__init__(name=name)
        self.gt = None

    def init(self, image, box) -> None:
        super().init(image, box)
        if len(self.gt) > 1:
            self.velocity = (self.gt[1, :2] + self.gt[1, 2:] / 2) - (self.gt[0, :2] + self.gt[0, 2:] / 2)
            self.scale = self.gt[1, 2:] / self.gt[0, 2:]
        else:
            self.velocity, self.scale = np.zeros(2), np.ones(2)

    def update(self, image) -> np.ndarray:
        self._next_index()
        size = self.box[2:] * self.scale
        center = self.box[:2] + self.box[2:] / 2 + self.velocity
        self.box = np.concatenate([center - size / 2, size])
        return self.box.copy()


@register_tracker("opencv_mil")
class OpenCVMILTracker(Tracker):
    """OpenCV's MIL tracker (Babenko et al., 2009) through ``cv2.TrackerMIL_create``.

    OpenCV works on BGR images and integer boxes; a failed update (``ok == False``) keeps the last box.
    Its boxes are not exactly repeatable from run to run (OpenCV's internal sampling ignores our seeds
    and ``cv2.setRNGSeed``), so two runs of this row may differ in the last digits.
    """

    name = "opencv_mil"

    def fingerprint(self) -> dict:
        import cv2

        return {**super().fingerprint(), "opencv": cv2.__version__}

    def init(self, image, box) -> None:
        import cv2

        image = as_rgb_array(image)
        b = as_box(box)
        self.box = b
        self._tracker = cv2.TrackerMIL_create()
        x, y, w, h = (int(round(v)) for v in b)
        self._tracker.init(image[:, :, ::-1].copy(), (x, y, max(w, 1), max(h, 1)))

    def update(self, image) -> np.ndarray:
        ok, rect = self._tracker.update(as_rgb_array(image)[:, :, ::-1].copy())
        if ok and rect[2] > 0 and rect[3] > 0:
            self.box = np.asarray(rect, dtype=np.float64)
        return self.box.copy()

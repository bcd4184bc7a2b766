"""The built-in tracking benchmark: synthetic sequences composited from scikit-image's bundled photos.

No tracking dataset can be downloaded here, so every sequence is *generated*: a background cut from
a photo, a target (a shape mask filled with a photo or procedural texture), distractors that look
like the target, an occluder, illumination change and motion blur. Everything a frame needs is a
smooth per-frame parameter track (centre, size, angle, appearance blend, gain, ...) drawn once from
``(seed, split, index)``; a frame is rendered on demand with a few ``cv2.warpAffine`` calls, so any
frame of any sequence can be fetched in any order and is byte-identical every time.

Layers, back to front: background (moved by the camera) -> distractors -> target -> occluder, then
illumination gain and motion blur over the whole frame.

Ground truth follows OTB: the box is the tight box of the target's *full* alpha mask (alpha > 0.5)
intersected with the image; occluders do not shrink it. ``visible[t]`` is False when less than
``VISIBLE_THRESHOLD`` of the target's mask pixels are both inside the image and not occluded.

Splits use disjoint source images (GOT-10k's one-shot rule): see ``SOURCE_POOLS``.
"""
from __future__ import annotations

import functools
import os
import zlib
from collections import OrderedDict

import cv2
import numpy as np

from mtl.data import Sequence

FRAME_W, FRAME_H = 320, 240
#: Side (pixels) of the canonical square on which target textures and masks are drawn.
CANON = 96
#: Background canvas margin (pixels) on each side, the room the camera can pan in.
CAMERA_PAD = 48
#: A frame counts as "target visible" when at least this fraction of the target's mask is seen.
VISIBLE_THRESHOLD = 0.1
SPLITS = ("train", "val", "test")

#: Disjoint source-image pools. motorcycle_left/right are a stereo pair, so they stay together.
SOURCE_POOLS = {
    "train": ("motorcycle_left", "motorcycle_right", "hubble_deep_field", "retina", "grass", "camera",
              "color", "phantom", "clock_motion", "chessboard_RGB", "logo", "microaneurysms"),
    "val": ("chelsea", "gravel", "page", "cell"),
    "test": ("astronaut", "coffee", "rocket", "brick", "coins", "text", "ihc", "moon"),
}
#: Indices into skimage's ``lfw_subset.npy`` (200 face crops, 25x25 grey) used as object textures.
FACE_RANGES = {"train": range(0, 125), "val": range(125, 150), "test": range(150, 200)}
#: Procedural textures per split; their ids embed the split, so pools are disjoint by construction.
NUM_PROCEDURAL = 30

#: (number of sequences, min frames, max frames) per split, full and quick mode.
SPLIT_SIZES = {
    ("train", False): (2000, 60, 200), ("val", False): (30, 100, 300), ("test", False): (120, 100, 300),
    ("train", True): (40, 40, 60), ("val", True): (6, 40, 60), ("test", True): (10, 40, 60),
}
#: Probability that a sequence has each generator effect (one independent draw per effect).
EFFECT_PROBS = {
    "appearance": 0.6, "deform": 0.35, "distractors": 0.45, "occlusion": 0.5, "illumination": 0.35,
    "scale": 0.35, "rotation": 0.3, "out_of_plane": 0.2, "fast": 0.25, "out_of_view": 0.2,
    "camera": 0.5, "camouflage": 0.2,
}
_SPLIT_CODE = {"train": 1, "val": 2, "test": 3}

#: Stress scenarios: the same generator with one effect forced on and made harder, drawn from the
#: split's own source images but with their own random stream, so the default splits are untouched.
#: ``force``: effects switched on in every sequence (the others keep their probabilities);
#: ``occlusion_frames``: length range of an occlusion event; ``occlusion_ramp``: frames the occluder
#: takes to slide on and off (None: a quarter of the event each way, so it covers fully for the middle half);
#: ``full_occlusion``: probability an occluder hides the whole target; ``occluders``, ``distractors``:
#: counts; ``distractor_kinds``: kinds to draw from; ``orbit``: (near, spread) of the distractor's
#: distance from the target centre, in target sizes. Integer ranges are numpy's ``integers(low, high)``,
#: high excluded: occluders (1, 2) is exactly one, distractors (2, 4) two or three.
SCENARIOS = {
    "long_occlusion": {"force": {"occlusion": True}, "occlusion_frames": (70, 120), "occlusion_ramp": 10,
                       "full_occlusion": 1.0, "occluders": (1, 2)},
    "distractors": {"force": {"distractors": True}, "distractors": (2, 4), "distractor_kinds": ("sibling",),
                    "orbit": (0.15, 1.2)},
}
_SCENARIO_CODE = {"long_occlusion": 1, "distractors": 2}
_DEFAULT_SCENARIO = {"occlusion_frames": (18, 50), "occlusion_ramp": None, "full_occlusion": 0.6, "occluders": (1, 3),
                     "distractors": (1, 4), "distractor_kinds": None, "orbit": (0.35, 2.2)}


# ----------------------------------------------------------------------------------------- sources

def _skimage_data_dir() -> str:
    import skimage
    return os.path.join(os.path.dirname(skimage.__file__), "data")


def source_ids(split: str) -> list[str]:
    """All source-image ids of a split: ``skimage:<name>``, ``lfw:<k>`` and ``proc:<split>:<k>``."""
    _check_split(split)
    ids = [f"skimage:{n}" for n in SOURCE_POOLS[split]]
    ids += [f"lfw:{k}" for k in FACE_RANGES[split]]
    ids += [f"proc:{split}:{k}" for k in range(NUM_PROCEDURAL)]
    return ids


@functools.lru_cache(maxsize=None)
def _lfw_faces() -> np.ndarray:
    return np.load(os.path.join(_skimage_data_dir(), "lfw_subset.npy"))  # (200, 25, 25) float64 in [0, 1]


@functools.lru_cache(maxsize=256)
def load_source(source_id: str) -> np.ndarray:
    """The source image ``source_id`` as HxWx3 float32 RGB in [0, 1] (bundled files only, no download)."""
    kind, _, rest = source_id.partition(":")
    if kind == "skimage":
        path = None
        for ext in (".png", ".jpg"):
            candidate = os.path.join(_skimage_data_dir(), rest + ext)
            if os.path.exists(candidate):
                path = candidate
        if path is None:
            raise FileNotFoundError(f"scikit-image bundled image {rest!r} not found in {_skimage_data_dir()}")
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        elif img.shape[2] == 4:  # RGBA logo: flatten onto white
            alpha = img[:, :, 3:4].astype(np.float32) / 255
            img = (img[:, :, :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
        img = img[:, :, ::-1]  # cv2 reads BGR
        return np.ascontiguousarray(img, dtype=np.float32) / 255
    if kind == "lfw":
        face = _lfw_faces()[int(rest)].astype(np.float32)
        return np.repeat(face[:, :, None], 3, axis=2)
    if kind == "proc":
        return _procedural_texture(zlib.crc32(source_id.encode()))
    raise ValueError(f"unknown source id {source_id!r} (expected skimage:, lfw: or proc:)")


def _procedural_texture(seed: int, size: int = 256) -> np.ndarray:
    """A colourful texture (oriented waves + value noise mapped through a random palette), HxWx3 float32."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
    field = np.zeros((size, size), np.float32)
    for _ in range(rng.integers(2, 5)):
        angle, freq, phase = rng.uniform(0, np.pi), rng.uniform(2, 14), rng.uniform(0, 2 * np.pi)
        field += np.sin(2 * np.pi * freq * (xs * np.cos(angle) + ys * np.sin(angle)) + phase)
    for cells in (4, 16):
        noise = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
        field += 1.5 * cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    field = (field - field.min()) / (np.ptp(field) + 1e-6)
    palette = rng.uniform(0, 1, (4, 3)).astype(np.float32)
    pos = field * 3
    lo = np.clip(pos.astype(int), 0, 2)
    frac = (pos - lo)[:, :, None]
    return np.clip(palette[lo] * (1 - frac) + palette[lo + 1] * frac, 0, 1).astype(np.float32)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


# ------------------------------------------------------------------------------------ small helpers

def _smooth_path(rng: np.random.Generator, n: int, max_cycles: float = 2.0, waves: int = 3) -> np.ndarray:
    """A smooth random curve of ``n`` samples, roughly in [-1, 1] (a sum of random sinusoids), float64 (n,)."""
    t = np.arange(n) / max(n - 1, 1)
    amps = rng.uniform(0.3, 1.0, waves)
    out = np.zeros(n)
    for a in amps:
        out += a * np.sin(2 * np.pi * rng.uniform(0.2, max_cycles) * t + rng.uniform(0, 2 * np.pi))
    return out / amps.sum()


def _ramp(n: int, start: int, end: int) -> np.ndarray:
    """0 before ``start``, a smoothstep to 1 at ``end``, 1 after; float64 (n,)."""
    t = np.clip((np.arange(n) - start) / max(end - start, 1), 0, 1)
    return t * t * (3 - 2 * t)


def _window(n: int, a: int, b: int, c: int, d: int) -> np.ndarray:
    """Trapezoid: 0 until ``a``, smooth rise to 1 at ``b``, 1 until ``c``, smooth fall to 0 at ``d``."""
    return _ramp(n, a, b) * (1 - _ramp(n, c, d))


def _hue_matrix(degrees: float) -> np.ndarray:
    """3x3 matrix rotating RGB colours by ``degrees`` about the grey axis (keeps brightness)."""
    th = np.deg2rad(degrees)
    k = np.ones(3) / np.sqrt(3)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return (np.cos(th) * np.eye(3) + (1 - np.cos(th)) * np.outer(k, k) + np.sin(th) * cross).astype(np.float32)


def _shape_alpha(rng: np.random.Generator, size: int = CANON) -> tuple[np.ndarray, str]:
    """A random anti-aliased shape inscribed in a ``size`` square: (alpha float32 (size, size) in [0,1], kind)."""
    kind = str(rng.choice(["ellipse", "rounded_rect", "diamond", "blob"]))
    c = (np.arange(size, dtype=np.float32) - (size - 1) / 2) / (size / 2)
    v, u = np.meshgrid(c, c, indexing="ij")
    if kind == "ellipse":
        rho = np.sqrt(u ** 2 + v ** 2)
    elif kind == "rounded_rect":
        rho = (np.abs(u) ** 4 + np.abs(v) ** 4) ** 0.25
    elif kind == "diamond":
        rho = (np.abs(u) ** 1.4 + np.abs(v) ** 1.4) ** (1 / 1.4)
    else:
        phi = np.arctan2(v, u)
        coeffs = rng.uniform(-0.12, 0.12, 4)
        radius = 1 + sum(a * np.cos((k + 2) * phi + rng.uniform(0, 6.3)) for k, a in enumerate(coeffs))
        rho = np.sqrt(u ** 2 + v ** 2) / (radius / (1 + np.abs(coeffs).sum()))
    rho = rho / 0.92  # keep a margin so the warped mask never touches the canonical border
    # distance to the boundary in canonical pixels -> 1-pixel-wide anti-aliased edge
    alpha = np.clip(0.5 + (1 - rho) * 0.92 * size / 2, 0, 1)
    return alpha.astype(np.float32), kind


def _crop_texture(rng: np.random.Generator, source_id: str, out_w: int, out_h: int,
                  min_frac: float = 0.15, max_frac: float = 0.5) -> np.ndarray:
    """A random crop of a source image resized to (out_h, out_w, 3) float32; grey sources get a random tint."""
    img = load_source(source_id)
    h, w = img.shape[:2]
    side = int(rng.uniform(min_frac, max_frac) * min(h, w)) if source_id.split(":")[0] != "lfw" else min(h, w)
    side = max(side, 8)
    crop_h = min(h, max(8, int(side * np.sqrt(out_h / out_w))))
    crop_w = min(w, max(8, int(side * np.sqrt(out_w / out_h))))
    y0 = int(rng.integers(0, h - crop_h + 1))
    x0 = int(rng.integers(0, w - crop_w + 1))
    crop = cv2.resize(img[y0:y0 + crop_h, x0:x0 + crop_w], (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    if np.ptp(img[::7, ::7].reshape(-1, 3).mean(0)) < 1e-3 and np.abs(img[::7, ::7, 0] - img[::7, ::7, 1]).max() < 1e-3:
        tint = rng.uniform(0.3, 1.0, 3).astype(np.float32)
        crop = crop * (tint / tint.max() * 1.1)
    return np.clip(crop, 0, 1).astype(np.float32)


# ------------------------------------------------------------------------------------ the sequence

class SynthSequence(Sequence):
    """A generated sequence: per-frame parameter tracks, frames rendered on demand.

    ``boxes``, ``visible``, ``cover`` and ``attributes`` are computed on first access (rasterising the
    target mask each frame), so building a 2000-sequence training split costs only the parameter draws.
    """

    def __init__(self, split: str, index: int, seed: int, num_frames: int, scenario: str | None = None):
        _check_scenario(scenario)
        self.name = f"synth-{split}-{index:04d}" if scenario is None else f"synth-{split}-{scenario}-{index:04d}"
        self.split, self.index, self.seed, self.scenario = split, index, seed, scenario
        self._num_frames = num_frames
        self.frame_loader = self._render
        self.meta = {}
        self.tracks = {}
        self.events = {}
        self._annotation = None
        _draw_parameters(self)

    # --- Sequence interface --------------------------------------------------------------------
    def __len__(self) -> int:
        return self._num_frames

    def __repr__(self) -> str:
        return f"SynthSequence({self.name!r}, frames={self._num_frames})"

    @property
    def boxes(self) -> np.ndarray:
        return self._annotate()["boxes"]

    @property
    def visible(self) -> np.ndarray:
        return self._annotate()["visible"]

    @property
    def cover(self) -> np.ndarray:
        return self._annotate()["cover"]

    @property
    def attributes(self) -> frozenset:
        return self._annotate()["attributes"]

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` as a (240, 320, 3) uint8 RGB array (rendered now; identical on every call)."""
        return self._render(self._check_index(i))

    # --- rendering -----------------------------------------------------------------------------
    def _assets(self) -> dict:
        key = (self.split, self.scenario, self.index, self.seed, self._num_frames)
        assets = _ASSET_CACHE.get(key)
        if assets is None:
            assets = _build_assets(self)
            _ASSET_CACHE[key] = assets
            if len(_ASSET_CACHE) > _ASSET_CACHE_SIZE:
                _ASSET_CACHE.popitem(last=False)
        else:
            _ASSET_CACHE.move_to_end(key)
        return assets

    def _target_affine(self, t: int) -> tuple[np.ndarray, int, int, int, int]:
        """Affine (2x3) from canonical target pixels to a region of interest, and that ROI x0, y0, w, h."""
        tr = self.tracks
        return _affine_roi(tr["cx"][t], tr["cy"][t], tr["w"][t], tr["h"][t], tr["angle"][t])

    def target_alpha(self, t: int) -> tuple[np.ndarray, int, int]:
        """The target's alpha mask at frame ``t`` in its ROI: (alpha float32 (h, w), x0, y0), not clipped to the image."""
        assets = self._assets()
        g = self.tracks["morph"][t]
        mask = assets["mask_a"] if g == 0 else (1 - g) * assets["mask_a"] + g * assets["mask_b"]
        m, x0, y0, w, h = self._target_affine(t)
        alpha = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        return alpha, x0, y0

    def render_mask(self, t: int) -> np.ndarray:
        """The target's alpha mask over the full frame at frame ``t``: float32 (240, 320) in [0, 1]."""
        t = self._check_index(t)
        alpha, x0, y0 = self.target_alpha(t)
        out = np.zeros((FRAME_H, FRAME_W), np.float32)
        _paste(out, alpha, x0, y0, mode="copy")
        return out

    def occluder_rects(self, t: int) -> list[tuple[int, int, int, int, int]]:
        """Occluders present at frame ``t``: list of (event index, x0, y0, x1, y1) integer pixel rects."""
        out = []
        for k, ev in enumerate(self.events["occluders"]):
            if ev["active"][t]:
                x0, y0 = int(ev["x0"][t]), int(ev["y0"][t])
                out.append((k, x0, y0, x0 + ev["tile_w"], y0 + ev["tile_h"]))
        return out

    def _render(self, t: int, layers: tuple[str, ...] = ("background", "distractors", "target", "occluder",
                                                         "illumination", "blur")) -> np.ndarray:
        assets = self._assets()
        tr = self.tracks
        frame = cv2.warpAffine(assets["canvas"], np.array([[1, 0, CAMERA_PAD + tr["cam_x"][t]],
                                                          [0, 1, CAMERA_PAD + tr["cam_y"][t]]], np.float32),
                               (FRAME_W, FRAME_H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        if "background" not in layers:
            frame[:] = 0.5
        if "distractors" in layers:
            for k, d in enumerate(self.events["distractors"]):
                m, x0, y0, w, h = _affine_roi(d["cx"][t], d["cy"][t], d["w"][t], d["h"][t], d["angle"][t])
                rgba = assets["distractor_rgba"][k]
                _paste(frame, cv2.warpAffine(rgba, m, (w, h), flags=cv2.INTER_LINEAR), x0, y0, mode="over")
        if "target" in layers:
            rgba = self._target_rgba(t, assets)
            m, x0, y0, w, h = self._target_affine(t)
            _paste(frame, cv2.warpAffine(rgba, m, (w, h), flags=cv2.INTER_LINEAR), x0, y0, mode="over")
        if "occluder" in layers:
            for k, x0, y0, _, _ in self.occluder_rects(t):
                _paste(frame, assets["occluder_tiles"][k], x0, y0, mode="copy")
        if "illumination" in layers and (tr["gain"][t] != 1 or tr["spot"][t] != 0):
            gx = np.exp(-0.5 * ((np.arange(FRAME_W) - tr["spot_x"][t]) / self.meta["spot_sigma"]) ** 2)
            gy = np.exp(-0.5 * ((np.arange(FRAME_H) - tr["spot_y"][t]) / self.meta["spot_sigma"]) ** 2)
            gain = (tr["gain"][t] * (1 + tr["spot"][t] * np.outer(gy, gx))).astype(np.float32)
            frame *= gain[:, :, None]
        if "blur" in layers and tr["blur_len"][t] >= 3:
            frame = cv2.filter2D(frame, -1, _blur_kernel(int(tr["blur_len"][t]), int(tr["blur_angle"][t])))
        return (np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8)

    def render_layers(self, t: int, layers: tuple[str, ...]) -> np.ndarray:
        """Frame ``t`` with only some ``layers`` drawn (background, distractors, target, occluder,
        illumination, blur): (240, 320, 3) uint8. Used to explain and to test the compositing."""
        return self._render(self._check_index(t), tuple(layers))

    def _target_rgba(self, t: int, assets: dict) -> np.ndarray:
        tr = self.tracks
        b, g = tr["blend"][t], tr["morph"][t]
        tex = assets["tex_a"] if b == 0 else (1 - b) * assets["tex_a"] + b * assets["tex_b"]
        if tr["hue"][t] != 0 or tr["tone"][t] != 1:
            tex = (tex.reshape(-1, 3) @ (_hue_matrix(tr["hue"][t]).T * tr["tone"][t])).reshape(tex.shape)
        mask = assets["mask_a"] if g == 0 else (1 - g) * assets["mask_a"] + g * assets["mask_b"]
        return np.dstack([np.clip(tex, 0, 1) * mask[:, :, None], mask]).astype(np.float32)

    # --- annotation ----------------------------------------------------------------------------
    def _annotate(self) -> dict:
        if self._annotation is None:
            self._annotation = _annotate(self)
        return self._annotation


_ASSET_CACHE: "OrderedDict[tuple, dict]" = OrderedDict()
_ASSET_CACHE_SIZE = 48


def _affine_roi(cx: float, cy: float, w: float, h: float, angle_deg: float):
    """Affine (2x3 float32) mapping canonical pixels to an integer ROI around (cx, cy), and ROI x0, y0, w, h.

    A canonical pixel q (centre at integer coords) maps to ``c + R(angle) S (q - (CANON-1)/2)`` with
    ``S = diag(w, h) / CANON``; the ROI is big enough for any rotation (the half diagonal + 2 px).
    """
    th = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    lin = rot @ np.diag([w / CANON, h / CANON])
    r = 0.5 * np.hypot(w, h) + 2
    x0, y0 = int(np.floor(cx - r)), int(np.floor(cy - r))
    x1, y1 = int(np.ceil(cx + r)) + 1, int(np.ceil(cy + r)) + 1
    offset = np.array([cx - x0, cy - y0]) - lin @ np.full(2, (CANON - 1) / 2)
    return np.hstack([lin, offset[:, None]]).astype(np.float32), x0, y0, x1 - x0, y1 - y0


def _paste(frame: np.ndarray, layer: np.ndarray, x0: int, y0: int, mode: str) -> None:
    """Draw ``layer`` (h, w[, c]) with its top-left at (x0, y0) into ``frame``, clipped to the frame, in place.

    mode "copy" overwrites; "over" composites premultiplied RGBA (h, w, 4) onto RGB.
    """
    fh, fw = frame.shape[:2]
    lh, lw = layer.shape[:2]
    ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + lw, fw), min(y0 + lh, fh)
    if ax0 >= ax1 or ay0 >= ay1:
        return
    src = layer[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0]
    if mode == "copy":
        frame[ay0:ay1, ax0:ax1] = src
    else:
        dst = frame[ay0:ay1, ax0:ax1]
        dst *= 1 - src[:, :, 3:4]
        dst += src[:, :, :3]


@functools.lru_cache(maxsize=256)
def _blur_kernel(length: int, angle_deg: int) -> np.ndarray:
    """A normalised line kernel (length x length float32) along ``angle_deg``: linear motion blur."""
    k = np.zeros((length, length), np.float32)
    c = (length - 1) / 2
    dx, dy = np.cos(np.deg2rad(angle_deg)) * c, np.sin(np.deg2rad(angle_deg)) * c
    cv2.line(k, (int(round(c - dx)), int(round(c - dy))), (int(round(c + dx)), int(round(c + dy))), 1.0, 1)
    return k / k.sum()


# ------------------------------------------------------------------------------ parameter drawing

def _check_scenario(scenario: str | None) -> None:
    if scenario is not None and scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; expected None or one of {sorted(SCENARIOS)}")


def _sequence_rng(seq: SynthSequence, stream: int) -> np.random.Generator:
    entropy = [seq.seed, _SPLIT_CODE[seq.split], seq.index, stream]
    if seq.scenario is not None:
        entropy.append(100 + _SCENARIO_CODE[seq.scenario])
    return np.random.default_rng(np.random.SeedSequence(entropy))


def _draw_parameters(seq: SynthSequence) -> None:
    """Draw every per-frame track and event of ``seq`` (cheap, no images touched)."""
    rng = _sequence_rng(seq, 0)
    n = seq._num_frames
    fx = {k: bool(rng.random() < p) for k, p in EFFECT_PROBS.items()}
    # a scenario changes values, never the order or number of draws, so each stays one coherent draw
    sc = {**_DEFAULT_SCENARIO, **SCENARIOS.get(seq.scenario, {})}
    fx.update(sc.get("force", {}))
    pool = source_ids(seq.split)
    photos = [s for s in pool if s.startswith("skimage:")]
    faces = [s for s in pool if s.startswith("lfw:")]
    procedural = [s for s in pool if s.startswith("proc:")]

    def pick(weights: tuple[float, float, float]) -> str:
        # photos / faces / procedural textures, in these proportions
        group = (photos, faces, procedural)[int(rng.choice(3, p=np.array(weights) / sum(weights)))]
        return str(rng.choice(group))
    tr: dict[str, np.ndarray] = {}

    # --- size, aspect, deformation of the target
    base = float(np.exp(rng.uniform(np.log(20), np.log(70))))
    aspect0 = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    log_scale = np.zeros(n)
    if fx["scale"]:  # SV: the size drifts by a factor 2.2-3 between its extremes
        path = _smooth_path(rng, n, max_cycles=1.0)
        path = (path - path.min()) / (np.ptp(path) + 1e-9)
        log_scale = np.log(rng.uniform(2.2, 3.0)) * (path - path[0])
    else:
        log_scale = 0.12 * _smooth_path(rng, n)
    log_aspect = (0.35 if fx["deform"] else 0.08) * _smooth_path(rng, n)
    squash = np.ones(n)
    if fx["out_of_plane"]:  # OPR as a turn about the vertical axis: the width shrinks as cos
        squash = np.maximum(np.abs(np.cos(np.deg2rad(rng.uniform(60, 75)) * (1 - np.cos(np.pi * rng.uniform(1, 3)
                                                                                         * np.arange(n) / n)))), 0.3)
    scale = np.exp(log_scale)
    scale = np.clip(scale * base, 16, 110) / base
    size = base * scale
    aspect = aspect0 * np.exp(log_aspect)
    tr["w"] = size * np.sqrt(aspect) * squash
    tr["h"] = size / np.sqrt(aspect)
    angle0 = rng.uniform(-15, 15)
    if fx["rotation"]:  # IPR: a smooth turn of up to +-(45-120) degrees from the start
        turn = _smooth_path(rng, n, 1.5)
        tr["angle"] = angle0 + rng.uniform(45, 120) * np.sign(rng.uniform(-1, 1)) * (turn - turn[0])
    else:
        tr["angle"] = angle0 + 5 * _smooth_path(rng, n)
    tr["morph"] = (0.5 - 0.5 * np.cos(np.pi * rng.uniform(1, 3) * np.arange(n) / max(n - 1, 1))) if fx["deform"] \
        else np.zeros(n)

    # --- trajectory: smooth drift, jumps (FM), an excursion out of the view (OV)
    radius = 0.5 * np.hypot(tr["w"], tr["h"])
    margin = radius.max() + 2
    span_x, span_y = max(FRAME_W / 2 - margin, 4), max(FRAME_H / 2 - margin, 4)
    px, py = _smooth_path(rng, n, 2.0), _smooth_path(rng, n, 2.0)
    if fx["fast"]:  # sudden jumps that take 2 frames, to a fresh random place
        for t0 in sorted(rng.choice(np.arange(5, max(n - 5, 6)), size=rng.integers(2, 5), replace=False)):
            jump = rng.uniform(-1.4, 1.4, 2)
            px[t0:] += jump[0] * _ramp(n, t0, t0 + 2)[t0:]
            py[t0:] += jump[1] * _ramp(n, t0, t0 + 2)[t0:]
        px = np.clip(px, -1, 1)
        py = np.clip(py, -1, 1)
    cx, cy = FRAME_W / 2 + span_x * px, FRAME_H / 2 + span_y * py
    if fx["out_of_view"]:
        a = int(rng.integers(0, max(n - 30, 1)))
        dur = int(rng.integers(15, 40))
        win = _window(n, a, a + dur // 3, a + 2 * dur // 3, a + dur)
        edge = int(rng.integers(4))
        depth = rng.uniform(0.0, 0.35)  # centre this far inside the edge, in target sizes
        if edge == 0:
            cx = cx + win * (depth * size - cx)
        elif edge == 1:
            cx = cx + win * (FRAME_W - 1 - depth * size - cx)
        elif edge == 2:
            cy = cy + win * (depth * size - cy)
        else:
            cy = cy + win * (FRAME_H - 1 - depth * size - cy)
    # the centre pixel stays inside the image, so part of the target is always in view
    tr["cx"], tr["cy"] = np.clip(cx, 2, FRAME_W - 3), np.clip(cy, 2, FRAME_H - 3)

    # --- appearance change: cross-fade to another texture, hue drift, tone change
    if fx["appearance"]:
        start = int(rng.integers(0, n // 4 + 1))
        end = int(rng.integers(max(start + 10, n // 2), n + 1))
        tr["blend"] = _ramp(n, start, end) * rng.uniform(0.8, 1.0)
        tr["hue"] = rng.uniform(40, 140) * np.sign(rng.uniform(-1, 1)) * _ramp(n, start, end)
        tr["tone"] = 1 + rng.uniform(-0.3, 0.3) * _ramp(n, start, end)
    else:
        tr["blend"], tr["hue"], tr["tone"] = np.zeros(n), 6 * _smooth_path(rng, n), np.ones(n)

    # --- camera, illumination, motion blur
    if fx["camera"]:
        tr["cam_x"] = (CAMERA_PAD - 2) * _smooth_path(rng, n, 1.5)
        tr["cam_y"] = (CAMERA_PAD - 2) * _smooth_path(rng, n, 1.5)
    else:
        tr["cam_x"], tr["cam_y"] = np.zeros(n), np.zeros(n)
    if fx["illumination"]:
        tr["gain"] = np.exp(rng.uniform(0.35, 0.6) * _smooth_path(rng, n, 1.5))
        tr["spot"] = rng.uniform(-0.6, 0.8) * (0.5 + 0.5 * _smooth_path(rng, n))
    else:
        tr["gain"] = np.exp(0.04 * _smooth_path(rng, n))
        tr["spot"] = np.zeros(n)
    tr["spot_x"] = FRAME_W / 2 + FRAME_W / 2 * _smooth_path(rng, n)
    tr["spot_y"] = FRAME_H / 2 + FRAME_H / 2 * _smooth_path(rng, n)
    speed = np.hypot(np.diff(tr["cx"], prepend=tr["cx"][0]), np.diff(tr["cy"], prepend=tr["cy"][0]))
    blur = fx["fast"] or rng.random() < 0.15
    tr["blur_len"] = np.where(speed > 6, np.clip(np.round(speed * 0.6) // 2 * 2 + 1, 3, 15), 0) if blur else np.zeros(n)
    tr["blur_angle"] = np.round(np.rad2deg(np.arctan2(np.diff(tr["cy"], prepend=tr["cy"][0]),
                                                       np.diff(tr["cx"], prepend=tr["cx"][0]))))

    # --- sources of background and target textures
    bg_source = pick((0.8, 0.0, 0.2))
    tex_a_source = bg_source if fx["camouflage"] else pick((0.5, 0.25, 0.25))
    tex_b_source = pick((0.5, 0.25, 0.25))

    # --- distractors: copies of the target with changed colour, or its future look, orbiting it
    distractors = []
    for k in range(int(rng.integers(*sc["distractors"])) if fx["distractors"] else 0):
        kind = str(rng.choice(["recolour", "future", "sibling"] if fx["appearance"] else ["recolour", "sibling"]))
        if sc["distractor_kinds"] is not None:
            kind = sc["distractor_kinds"][k % len(sc["distractor_kinds"])]
        factor = rng.uniform(0.8, 1.2)
        orbit = (sc["orbit"][0] + sc["orbit"][1] * np.abs(_smooth_path(rng, n, 1.5))) * size
        phase = rng.uniform(0, 2 * np.pi) + rng.uniform(-3, 3) * np.arange(n) / n * 2 * np.pi
        distractors.append({
            "kind": kind, "hue": float(rng.uniform(20, 50) * np.sign(rng.uniform(-1, 1))),
            "cx": tr["cx"] + orbit * np.cos(phase), "cy": tr["cy"] + orbit * np.sin(phase),
            "w": tr["w"] * factor, "h": tr["h"] * factor, "angle": tr["angle"] + rng.uniform(-20, 20),
        })

    # --- occluders: textured rectangles that slide onto the target, stay several frames, slide off
    occluders = []
    for k in range(int(rng.integers(*sc["occluders"])) if fx["occlusion"] else 0):
        dur = int(rng.integers(*sc["occlusion_frames"]))
        a = int(rng.integers(1, max(n - dur, 2)))
        on, off = (dur // 4, 3 * dur // 4) if sc["occlusion_ramp"] is None else (sc["occlusion_ramp"], dur - sc["occlusion_ramp"])
        win = _window(n, a, a + on, a + off, a + dur)
        full = rng.random() < sc["full_occlusion"]
        mid = min(a + dur // 2, n - 1)
        ext = 2 * radius[a:a + dur].max()
        tile_w = int(np.ceil(ext * rng.uniform(1.1, 1.4))) if full else int(ext * rng.uniform(0.5, 0.8))
        tile_h = int(np.ceil(ext * rng.uniform(1.1, 1.4))) if full else int(ext * rng.uniform(0.6, 1.0))
        direction = rng.uniform(0, 2 * np.pi)
        away = 1.5 * ext + max(tile_w, tile_h)
        shift = 0.0 if full else rng.uniform(0.25, 0.45) * ext
        ox = tr["cx"] + np.cos(direction) * ((1 - win) * away + shift)
        oy = tr["cy"] + np.sin(direction) * ((1 - win) * away + shift)
        occluders.append({
            "x0": np.round(ox - tile_w / 2).astype(int), "y0": np.round(oy - tile_h / 2).astype(int),
            "tile_w": max(tile_w, 4), "tile_h": max(tile_h, 4), "active": win > 1e-3, "full": bool(full),
            "source": pick((0.7, 0.0, 0.3)), "mid": mid,
        })

    seq.tracks = tr
    seq.events = {"distractors": distractors, "occluders": occluders}
    seq.meta = {
        "generator": "mtl.synth", "split": seq.split, "index": seq.index, "seed": seq.seed, "scenario": seq.scenario,
        "effects": fx, "base_size": base, "aspect": aspect0,
        "background_source": bg_source, "texture_sources": [tex_a_source, tex_b_source],
        "occluder_sources": [o["source"] for o in occluders],
        "num_distractors": len(distractors), "distractor_kinds": [d["kind"] for d in distractors],
        "num_occlusions": len(occluders), "spot_sigma": float(rng.uniform(40, 90)),
        "appearance_change": bool(fx["appearance"]),
        "illumination_range": float(tr["gain"].max() / tr["gain"].min()),
    }
    used = {bg_source, tex_a_source} | ({tex_b_source} if fx["appearance"] else set())
    used |= {o["source"] for o in occluders}
    seq.sources = frozenset(used)


def _build_assets(seq: SynthSequence) -> dict:
    """Images a sequence needs (background canvas, target textures and masks, distractors, occluders)."""
    rng = _sequence_rng(seq, 1)
    meta = seq.meta
    cw, ch = FRAME_W + 2 * CAMERA_PAD, FRAME_H + 2 * CAMERA_PAD
    canvas = _crop_texture(rng, meta["background_source"], cw, ch, 0.5, 1.0)
    mask_a, _ = _shape_alpha(rng)
    mask_b, _ = _shape_alpha(rng) if meta["effects"]["deform"] else (mask_a, None)
    tex_a = _crop_texture(rng, meta["texture_sources"][0], CANON, CANON)
    tex_b = _crop_texture(rng, meta["texture_sources"][1], CANON, CANON) if meta["appearance_change"] else tex_a
    distractor_rgba = []
    for d in seq.events["distractors"]:
        if d["kind"] == "future":
            tex = tex_b @ _hue_matrix(seq.tracks["hue"][-1] + d["hue"] * 0.3).T
        elif d["kind"] == "sibling":
            tex = _crop_texture(rng, meta["texture_sources"][0], CANON, CANON) @ _hue_matrix(d["hue"] * 0.3).T
        else:
            tex = tex_a[:, ::-1] @ _hue_matrix(d["hue"]).T
        distractor_rgba.append(np.dstack([np.clip(tex, 0, 1) * mask_a[:, :, None], mask_a]).astype(np.float32))
    occluder_tiles = [_crop_texture(rng, o["source"], o["tile_w"], o["tile_h"], 0.2, 0.6)
                      for o in seq.events["occluders"]]
    return {"canvas": canvas, "mask_a": mask_a, "mask_b": mask_b, "tex_a": tex_a, "tex_b": tex_b,
            "distractor_rgba": distractor_rgba, "occluder_tiles": occluder_tiles}


def _annotate(seq: SynthSequence) -> dict:
    """Rasterise the target mask in every frame: boxes, visible fraction, occlusion, attribute tags."""
    n = len(seq)
    boxes = np.zeros((n, 4))
    cover = np.zeros(n)
    in_view = np.zeros(n)
    occluded = np.zeros(n)
    for t in range(n):
        alpha, x0, y0 = seq.target_alpha(t)
        on = alpha > 0.5
        total = on.sum()
        h, w = on.shape
        ys, xs = np.arange(y0, y0 + h), np.arange(x0, x0 + w)
        inside = ((ys >= 0) & (ys < FRAME_H))[:, None] & ((xs >= 0) & (xs < FRAME_W))[None, :]
        seen = on & inside
        rows, cols = np.flatnonzero(seen.any(1)), np.flatnonzero(seen.any(0))
        if total == 0 or rows.size == 0:  # cannot happen: the centre pixel is kept inside the image
            raise RuntimeError(f"{seq.name}: target mask empty in view at frame {t}")
        boxes[t] = [x0 + cols[0], y0 + rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1]
        hidden = np.zeros_like(on)
        for _, ox0, oy0, ox1, oy1 in seq.occluder_rects(t):
            hidden |= ((ys >= oy0) & (ys < oy1))[:, None] & ((xs >= ox0) & (xs < ox1))[None, :]
        in_view[t] = seen.sum() / total
        occluded[t] = (on & hidden).sum() / total
        cover[t] = (seen & ~hidden).sum() / total
    visible = cover >= VISIBLE_THRESHOLD
    tr, fx = seq.tracks, seq.meta["effects"]
    size = np.sqrt(tr["w"] * tr["h"])
    centre_step = np.hypot(np.diff(tr["cx"]), np.diff(tr["cy"])) if n > 1 else np.zeros(1)
    attrs = set()
    if seq.meta["illumination_range"] > 1.5 or np.abs(tr["spot"]).max() > 0.3:
        attrs.add("IV")
    if (size / size[0]).max() > 2 or (size / size[0]).min() < 0.5:
        attrs.add("SV")
    if occluded.max() >= 0.3:
        attrs.add("OCC")
    if np.ptp(tr["morph"]) > 0.5 or np.ptp(np.log(tr["w"] / tr["h"])) > np.log(1.8):
        attrs.add("DEF")
    if (tr["blur_len"] >= 3).any():
        attrs.add("MB")
    if centre_step.max() > 20:
        attrs.add("FM")
    if np.abs(tr["angle"] - tr["angle"][0]).max() > 30:
        attrs.add("IPR")
    if fx["out_of_plane"] and tr["w"].min() / tr["w"].max() < 0.6:
        attrs.add("OPR")
    if in_view.min() < 0.9:
        attrs.add("OV")
    if seq.events["distractors"] or fx["camouflage"]:
        attrs.add("BC")
    if np.mean(boxes[:, 2] * boxes[:, 3] < 400) >= 0.2:
        attrs.add("LR")
    return {"boxes": boxes, "visible": visible, "cover": cover, "in_view": in_view, "occluded": occluded,
            "attributes": frozenset(attrs)}


# ------------------------------------------------------------------------------------------ splits

def make_split(split: str, quick: bool = False, seed: int = 0, num_sequences: int | None = None,
               scenario: str | None = None) -> list[Sequence]:
    """The synthetic ``split`` ("train", "val" or "test"): a list of lazily rendered sequences.

    Full mode: train 2000 sequences of 60-200 frames, val 30 and test 120 of 100-300 frames;
    quick mode: 40 / 6 / 10 sequences of 40-60 frames. ``num_sequences`` overrides the count (the
    first k sequences are the same whatever k). Deterministic from ``seed``; frames are 240x320 RGB.
    ``scenario``: a stress set from :data:`SCENARIOS` (e.g. ``"long_occlusion"``), same sizes and source
    images as ``split``, sequences named ``synth-<split>-<scenario>-<k>``; None: the split itself.
    """
    _check_split(split)
    _check_scenario(scenario)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    count, lo, hi = SPLIT_SIZES[(split, bool(quick))]
    if num_sequences is not None:
        if num_sequences < 1:
            raise ValueError(f"num_sequences must be >= 1, got {num_sequences}")
        count = int(num_sequences)
    out = []
    for i in range(count):
        length_rng = np.random.default_rng([seed, _SPLIT_CODE[split], i, 99, int(quick)])
        out.append(SynthSequence(split, i, int(seed), int(length_rng.integers(lo, hi + 1)), scenario=scenario))
    return out

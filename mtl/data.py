"""Tracking sequences and datasets: the built-in synthetic benchmark and loaders for OTB, GOT-10k, LaSOT.

A :class:`Sequence` is a name, ground-truth boxes ``(N, 4)`` as ``x, y, w, h`` in 0-based pixels,
OTB attribute tags, per-frame visibility, and frames that load (or render) only when asked for.

``load_dataset(spec)`` takes ``"synth:train|val|test"`` (``"synth:test:long_occlusion"``: a stress
set), ``"otb:PATH"``, ``"got10k:PATH"`` or ``"lasot:PATH"``. ``write_split(sequences, out, format)``
writes sequences to disk in the OTB or GOT-10k layout, and the loaders read them back with identical
boxes.

Box convention: pixel ``i`` covers ``[i, i+1)``; a box ``x, y, w, h`` covers columns
``x .. x+w-1``. Files written here hold exactly these numbers (no +1 shift), and files read are
taken as they are, as the got10k toolkit does for OTB.
"""
from __future__ import annotations

import configparser
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

ATTRIBUTES = ("IV", "SV", "OCC", "DEF", "MB", "FM", "IPR", "OPR", "OV", "BC", "LR")
ATTRIBUTE_NAMES = {
    "IV": "illumination variation", "SV": "scale variation", "OCC": "occlusion", "DEF": "deformation",
    "MB": "motion blur", "FM": "fast motion", "IPR": "in-plane rotation", "OPR": "out-of-plane rotation",
    "OV": "out of view", "BC": "background clutter", "LR": "low resolution",
}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

#: OTB-2015 sequences whose image folder holds more frames than the ground truth covers; the
#: frame ranges (1-based, inclusive) are those of the OTB toolkit (as the got10k toolkit applies).
OTB_FRAME_RANGES = {"David": (300, 770), "Football1": (1, 74), "Freeman3": (1, 460), "Freeman4": (1, 283),
                    "Diving": (1, 215), "Tiger1": (6, 354)}


@dataclass(eq=False)
class Sequence:
    """One tracking sequence.

    name: unique name. boxes: (N, 4) float64 ``x, y, w, h`` 0-based pixels, finite, w, h > 0.
    attributes: subset of :data:`ATTRIBUTES`. visible: (N,) bool, False when the target is fully
    occluded or out of view. cover: (N,) float64 visible fraction in [0, 1] (or None).
    meta: free-form information (generator parameters, source file). sources: ids of the source
    images the sequence was made from (synthetic ones). frame_loader: ``i -> HxWx3 uint8 RGB``.
    """

    name: str
    boxes: np.ndarray
    attributes: frozenset = frozenset()
    visible: np.ndarray | None = None
    cover: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    sources: frozenset = frozenset()
    frame_loader: Callable[[int], np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        if self.visible is None:
            self.visible = np.ones(len(self.boxes), bool)
        self.visible = np.asarray(self.visible, dtype=bool)
        self.attributes = frozenset(self.attributes)
        if len(self.visible) != len(self.boxes):
            raise ValueError(f"{self.name}: {len(self.boxes)} boxes but {len(self.visible)} visibility flags")

    def __len__(self) -> int:
        return len(self.boxes)

    def _check_index(self, i: int) -> int:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"{self.name}: frame {i} out of range for {n} frames")
        return int(i) % n

    def frame(self, i: int) -> np.ndarray:
        """Frame ``i`` as an HxWx3 uint8 RGB array (loaded from disk or rendered now)."""
        if self.frame_loader is None:
            raise RuntimeError(f"{self.name}: this sequence has no frames attached")
        return self.frame_loader(self._check_index(i))

    def first(self, n: int | None) -> "Sequence":
        """The sequence cut to its first ``n`` frames (same name: quick-mode smoke runs); itself when ``n`` is None or >= its length.

        A cut sequence is another sequence: keep its results apart (e.g. a ``-first<n>`` benchmark name).
        """
        if n is None or n >= len(self):
            return self
        if n < 1:
            raise ValueError(f"a sequence needs at least 1 frame, got n={n}")
        return Sequence(self.name, self.boxes[:n], attributes=self.attributes, visible=self.visible[:n],
                        cover=None if self.cover is None else self.cover[:n], meta=self.meta,
                        sources=self.sources, frame_loader=self.frame_loader)


# ------------------------------------------------------------------------------------ file reading

def _imread(path: str | os.PathLike, flags: int) -> np.ndarray:
    """``cv2.imread`` that raises: FileNotFoundError for a missing file, ValueError for one OpenCV cannot decode."""
    if not os.path.isfile(path):  # checked first: OpenCV would also print a warning of its own
        raise FileNotFoundError(f"image not found: {path}")
    img = cv2.imread(str(path), flags)
    if img is None:
        raise ValueError(f"{path}: corrupt or unreadable image (OpenCV could not decode it)")
    return img


def _read_image(path: str | os.PathLike) -> np.ndarray:
    return np.ascontiguousarray(_imread(path, cv2.IMREAD_COLOR)[:, :, ::-1])


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file (decodes it once)."""
    img = _imread(path, cv2.IMREAD_UNCHANGED)
    return img.shape[1], img.shape[0]


def _list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    return files


def read_boxes(path: str | os.PathLike, image_size: tuple[int, int] | None = None,
               allow_invalid: np.ndarray | None = None) -> np.ndarray:
    """Read a ground-truth file of ``x, y, w, h`` lines (comma, space or tab separated): (N, 4) float64.

    Raises ValueError naming the file and 1-based line for a line without 4 numbers, NaN, a
    non-positive size, or (when ``image_size`` = (width, height) is given) a box wholly outside the
    image. Lines flagged in ``allow_invalid`` (N,) bool (frames where the target is absent) may hold
    such boxes; they get the previous valid box (or the next one at the start).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground-truth file {path} does not exist")
    lines = [ln for ln in path.read_text().splitlines()]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ValueError(f"{path}: ground-truth file is empty")
    boxes = np.zeros((len(lines), 4))
    bad = np.zeros(len(lines), bool)
    for k, line in enumerate(lines):
        parts = [p for p in re.split(r"[,\s]+", line.strip()) if p]
        if len(parts) != 4:
            raise ValueError(f"{path}:{k + 1}: expected 4 numbers x,y,w,h, got {line.strip()!r}")
        try:
            box = np.array([float(p) for p in parts])
        except ValueError:
            raise ValueError(f"{path}:{k + 1}: not a number in {line.strip()!r}") from None
        problem = None
        if not np.all(np.isfinite(box)):
            problem = f"non-finite value in box {line.strip()!r}"
        elif box[2] <= 0 or box[3] <= 0:
            problem = f"non-positive size w={box[2]:g}, h={box[3]:g}"
        elif image_size is not None and (box[0] >= image_size[0] or box[1] >= image_size[1]
                                         or box[0] + box[2] <= 0 or box[1] + box[3] <= 0):
            problem = f"box {box.tolist()} lies wholly outside the {image_size[0]}x{image_size[1]} image"
        if problem is not None:
            if allow_invalid is not None and k < len(allow_invalid) and allow_invalid[k]:
                bad[k] = True
            else:
                raise ValueError(f"{path}:{k + 1}: {problem}")
        boxes[k] = box
    if bad.all():
        raise ValueError(f"{path}: no valid box in the file")
    if bad.any():
        valid = np.flatnonzero(~bad)
        for k in np.flatnonzero(bad):
            prev = valid[valid < k]
            boxes[k] = boxes[prev[-1] if prev.size else valid[0]]
    return boxes


def _read_flags(path: Path, n: int, what: str) -> np.ndarray:
    """Read n integer flags (one per line, or comma separated on one line, as LaSOT): (n,) int64."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    values = []
    for k, line in enumerate(path.read_text().splitlines()):
        for p in (q for q in re.split(r"[,\s]+", line.strip()) if q):
            try:
                values.append(int(float(p)))
            except ValueError:
                raise ValueError(f"{path}:{k + 1}: not a number {p!r}") from None
    if len(values) != n:
        raise ValueError(f"{path}: {len(values)} values but the ground truth has {n} lines")
    return np.array(values, dtype=np.int64)


def _check_count(gt_path: Path, boxes: np.ndarray, frames: list[Path], folder: Path) -> None:
    if len(boxes) != len(frames):
        raise ValueError(f"{gt_path}: {len(boxes)} ground-truth lines but {len(frames)} frames in {folder}")


def _file_sequence(name, frames, boxes, visible=None, cover=None, attributes=(), meta=None) -> Sequence:
    frames = list(frames)
    return Sequence(name=name, boxes=boxes, attributes=frozenset(attributes), visible=visible, cover=cover,
                    meta=meta or {}, frame_loader=lambda i: _read_image(frames[i]))


def _read_attributes(path: Path) -> frozenset:
    if not path.is_file():
        return frozenset()
    tags = {t.strip().upper() for t in re.split(r"[,\s]+", path.read_text()) if t.strip()}
    unknown = tags - set(ATTRIBUTES)
    if unknown:
        raise ValueError(f"{path}: unknown attribute tags {sorted(unknown)}")
    return frozenset(tags)


# -------------------------------------------------------------------------------------- loaders

def load_otb(root: str | os.PathLike) -> list[Sequence]:
    """OTB-2015 layout: ``root/<Seq>/img/0001.jpg`` and ``root/<Seq>/groundtruth_rect.txt``.

    Separators may be commas, spaces or tabs. ``groundtruth_rect.<k>.txt`` (two targets, e.g.
    Jogging) gives sequences ``<Seq>.<k>``. Frame ranges of :data:`OTB_FRAME_RANGES` are applied;
    otherwise the number of lines must equal the number of frames. An optional ``attributes.txt``
    (tags written by :func:`write_split`) and ``absence.label`` are read when present.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"OTB folder {root} does not exist")
    seq_dirs = sorted(d for d in root.iterdir() if d.is_dir() and (d / "img").is_dir())
    if not seq_dirs:
        raise FileNotFoundError(f"no OTB sequences (<Seq>/img/) in {root}")
    out = []
    for d in seq_dirs:
        gts = sorted(d.glob("groundtruth_rect*.txt"))
        if not gts:
            raise FileNotFoundError(f"ground-truth file {d / 'groundtruth_rect.txt'} does not exist")
        frames = _list_images(d / "img")
        if d.name in OTB_FRAME_RANGES:
            first, last = OTB_FRAME_RANGES[d.name]
            frames = frames[first - 1:last]
        size = _image_size(frames[0])
        for gt in gts:
            absence_path = d / "absence.label"
            absent = None
            if absence_path.is_file():
                absent = _read_flags(absence_path, len(frames), "absence") > 0
            boxes = read_boxes(gt, size, allow_invalid=absent)
            _check_count(gt, boxes, frames, d / "img")
            suffix = gt.name[len("groundtruth_rect"):-len(".txt")]
            name = d.name + suffix
            out.append(_file_sequence(name, frames, boxes, visible=None if absent is None else ~absent,
                                      attributes=_read_attributes(d / "attributes.txt"),
                                      meta={"dataset": "otb", "path": str(d)}))
    return out


def load_got10k(root: str | os.PathLike) -> list[Sequence]:
    """GOT-10k layout: ``root/<Seq>/00000001.jpg``, ``groundtruth.txt``, ``absence.label``, ``cover.label``.

    Sequences are those in ``root/list.txt`` when it exists, else every sub-folder with a
    ``groundtruth.txt``. visible = not absent; cover = cover.label / 8 (levels 0..8). Attribute tags
    are read from ``meta_info.ini`` (key ``attributes``) when written by :func:`write_split`.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"GOT-10k folder {root} does not exist")
    list_file = root / "list.txt"
    if list_file.is_file():
        names = [ln.strip() for ln in list_file.read_text().splitlines() if ln.strip()]
        seq_dirs = [root / name for name in names]
        for k, d in enumerate(seq_dirs):
            if not d.is_dir():
                raise FileNotFoundError(f"{list_file}:{k + 1}: sequence folder {d} does not exist")
    else:
        seq_dirs = sorted(d for d in root.iterdir() if d.is_dir() and (d / "groundtruth.txt").exists())
    if not seq_dirs:
        raise FileNotFoundError(f"no GOT-10k sequences in {root}")
    out = []
    for d in seq_dirs:
        gt = d / "groundtruth.txt"
        if not gt.is_file():
            raise FileNotFoundError(f"ground-truth file {gt} does not exist")
        frames = _list_images(d)
        absent = cover = None
        if (d / "absence.label").is_file():
            absent = _read_flags(d / "absence.label", len(frames), "absence") > 0
        if (d / "cover.label").is_file():
            cover = _read_flags(d / "cover.label", len(frames), "cover") / 8.0
        boxes = read_boxes(gt, _image_size(frames[0]), allow_invalid=absent)
        _check_count(gt, boxes, frames, d)
        attrs = frozenset()
        meta_file = d / "meta_info.ini"
        if meta_file.is_file():
            parser = configparser.ConfigParser()
            parser.read_string("[meta]\n" + meta_file.read_text().replace("[METAINFO]", ""))
            attrs = frozenset(t for t in re.split(r"[,\s]+", parser["meta"].get("attributes", "")) if t)
        out.append(_file_sequence(d.name, frames, boxes, visible=None if absent is None else ~absent,
                                  cover=cover, attributes=attrs, meta={"dataset": "got10k", "path": str(d)}))
    return out


def load_lasot(root: str | os.PathLike) -> list[Sequence]:
    """LaSOT layout: ``root/<class>/<class>-<k>/img/00000001.jpg``, ``groundtruth.txt``,
    ``full_occlusion.txt`` and ``out_of_view.txt`` (comma-separated 0/1 flags). visible = neither.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"LaSOT folder {root} does not exist")
    seq_dirs = sorted(d for c in root.iterdir() if c.is_dir() for d in c.iterdir()
                      if d.is_dir() and (d / "img").is_dir())
    if not seq_dirs:
        raise FileNotFoundError(f"no LaSOT sequences (<class>/<class>-<k>/img/) in {root}")
    out = []
    for d in seq_dirs:
        gt = d / "groundtruth.txt"
        frames = _list_images(d / "img")
        invisible = np.zeros(len(frames), bool)
        attrs = set()
        for fname, tag in (("full_occlusion.txt", "OCC"), ("out_of_view.txt", "OV")):
            if (d / fname).is_file():
                flags = _read_flags(d / fname, len(frames), fname) > 0
                invisible |= flags
                if flags.any():
                    attrs.add(tag)
        boxes = read_boxes(gt, _image_size(frames[0]), allow_invalid=invisible)
        _check_count(gt, boxes, frames, d / "img")
        out.append(_file_sequence(d.name, frames, boxes, visible=~invisible, attributes=attrs,
                                  meta={"dataset": "lasot", "path": str(d), "class": d.parent.name}))
    return out


def load_dataset(spec: str, quick: bool = False, seed: int = 0) -> list[Sequence]:
    """Sequences named by ``spec``: ``synth:train|val|test``, ``otb:PATH``, ``got10k:PATH``, ``lasot:PATH``.

    ``synth:<split>:<scenario>`` is a stress set of that split (``mtl.synth.SCENARIOS``, e.g.
    ``synth:test:long_occlusion``). ``quick`` (synthetic only) gives the short quick-mode split;
    ``seed`` picks the synthetic draw.
    """
    kind, sep, arg = spec.partition(":")
    if not sep or not arg:
        raise ValueError(f"dataset spec must look like 'synth:test' or 'otb:PATH', got {spec!r}")
    if kind == "synth":
        from mtl.synth import make_split
        split, _, scenario = arg.partition(":")
        return make_split(split, quick=quick, seed=seed, scenario=scenario or None)
    loaders = {"otb": load_otb, "got10k": load_got10k, "lasot": load_lasot}
    if kind not in loaders:
        raise ValueError(f"unknown dataset kind {kind!r} in {spec!r}; expected synth, otb, got10k or lasot")
    return loaders[kind](arg)


# ---------------------------------------------------------------------------------------- writing

def _format_box(box: np.ndarray, sep: str) -> str:
    # repr() of a Python float round-trips exactly; integer-valued boxes print as plain integers
    return sep.join(str(int(v)) if float(v).is_integer() else repr(float(v)) for v in box)


def write_split(sequences: list[Sequence], out_dir: str | os.PathLike, format: str = "otb",
                image_ext: str = ".jpg", progress: bool = False) -> Path:
    """Write ``sequences`` to ``out_dir`` in the OTB or GOT-10k layout; returns ``out_dir``.

    otb: ``<out>/<Seq>/img/0001.jpg``, ``groundtruth_rect.txt`` (comma separated, our 0-based boxes
    as they are), ``absence.label`` and ``attributes.txt``. got10k: ``<out>/<Seq>/00000001.jpg``,
    ``groundtruth.txt``, ``absence.label``, ``cover.label`` (0..8; 0 on absent frames),
    ``cut_by_image.label``, ``meta_info.ini`` (with ``resolution: (W, H)``, the toolkit's IoU bound)
    and ``<out>/list.txt``: what the got10k toolkit's ``ExperimentGOT10k`` reads. Frames are JPEG (quality 95) or PNG (``image_ext=".png"``, lossless).
    mp4: ``<out>/<Seq>.mp4`` (25 frames/s, lossy ``mp4v``) and ``<out>/<Seq>.txt`` (its ground truth, one
    box per line): a clip to try ``mtl track`` on, with the first line as its ``--box``.
    """
    if format not in ("otb", "got10k", "mp4"):
        raise ValueError(f"format must be 'otb', 'got10k' or 'mp4', got {format!r}")
    if image_ext not in (".jpg", ".png"):
        raise ValueError(f"image_ext must be '.jpg' or '.png', got {image_ext!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if image_ext == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    iterator = sequences
    if progress:
        from mtl.utils import progress_bar
        iterator = progress_bar(sequences, desc=f"writing {format}", leave=True)
    for seq in iterator:
        if format == "mp4":
            from mtl.video import write_video

            write_video((seq.frame(i) for i in range(len(seq))), out / f"{seq.name}.mp4")
            (out / f"{seq.name}.txt").write_text("\n".join(_format_box(b, ",") for b in seq.boxes) + "\n")
            continue
        d = out / seq.name
        img_dir = d / "img" if format == "otb" else d
        img_dir.mkdir(parents=True, exist_ok=True)
        digits = 4 if format == "otb" else 8
        for i in range(len(seq)):
            path = img_dir / f"{i + 1:0{digits}d}{image_ext}"
            if not cv2.imwrite(str(path), np.ascontiguousarray(seq.frame(i)[:, :, ::-1]), params):
                raise OSError(f"could not write {path}")
        absence = "\n".join(str(int(not v)) for v in seq.visible) + "\n"
        tags = ",".join(t for t in ATTRIBUTES if t in seq.attributes)
        if format == "otb":
            (d / "groundtruth_rect.txt").write_text("\n".join(_format_box(b, ",") for b in seq.boxes) + "\n")
            (d / "absence.label").write_text(absence)
            (d / "attributes.txt").write_text(tags + "\n")
        else:
            (d / "groundtruth.txt").write_text("\n".join(_format_box(b, ",") for b in seq.boxes) + "\n")
            (d / "absence.label").write_text(absence)
            cover = seq.cover if seq.cover is not None else seq.visible.astype(float)
            # an absent frame gets cover 0: the toolkit scores frames with cover > 0, we score visible ones
            levels = np.where(seq.visible, np.round(np.asarray(cover) * 8), 0).astype(int)
            (d / "cover.label").write_text("\n".join(str(c) for c in levels) + "\n")
            (d / "cut_by_image.label").write_text("0\n" * len(seq))  # the toolkit's dataset reads it
            h, w = seq.frame(0).shape[:2]
            (d / "meta_info.ini").write_text(f"[METAINFO]\nattributes: {tags}\nsource: mtl\n"
                                             f"resolution: ({w}, {h})\n")
    if format == "got10k":
        (out / "list.txt").write_text("\n".join(s.name for s in sequences) + "\n")
    return out


def generate(split: str, out_dir: str | os.PathLike, format: str = "otb", quick: bool = False, seed: int = 0,
             num_sequences: int | None = None, image_ext: str = ".jpg", scenario: str | None = None) -> Path:
    """Generate the synthetic ``split`` (or its stress set ``scenario``) and write it to ``out_dir`` (``mtl generate``)."""
    from mtl.synth import make_split
    return write_split(make_split(split, quick=quick, seed=seed, num_sequences=num_sequences, scenario=scenario),
                       out_dir, format=format, image_ext=image_ext, progress=True)

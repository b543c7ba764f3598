"""Face detection stage: frame -> boxes (x, y, w, h) and scores.

YuNet (OpenCV's FaceDetectorYN) when its ONNX file is available, the Haar cascade that
ships with opencv-python otherwise. Small images (a 48x48 FER face) are upscaled and
padded first: both detectors are tuned for faces with some surroundings, not for a
face filling a tiny image.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

log = logging.getLogger(__name__)

YUNET_FILE = "face_detection_yunet_2023mar.onnx"
# Development checkouts keep the model beside the repo, never inside it.
DEV_YUNET = (Path(__file__).resolve().parent.parent.parent
             / "shared" / "models" / "yunet" / YUNET_FILE)
SMALL_SIDE = 160  # images whose longer side is below this are upscaled to it
SMALL_PAD = 0.25  # then padded by this fraction of the side on every edge
# YuNet's smallest anchors find faces of about 10 px; a margin keeps its boxes tight.
YUNET_MIN_PX = 12
# Recheck of a shrunk pass's weak faces: a square REGION_K times the face's side around
# it, taken from the full frame and resized to REGION_PX (the face then spans about
# REGION_PX / REGION_K = 64 px, where YuNet is sure), at most MAX_RECHECKS per frame.
REGION_K = 2.5
REGION_PX = 160
MAX_RECHECKS = 4
BACKENDS = ("onnxruntime", "opencv")


class YuNetNet(Protocol):
    """What YuNetDetector needs of a network: cv2.FaceDetectorYN's two calls."""

    def setInputSize(self, size: tuple[int, int]) -> None: ...

    def detect(self, image: np.ndarray) -> tuple[int, np.ndarray | None]: ...


class DetectorError(RuntimeError):
    """The detector cannot be created (unreadable model file)."""


@dataclass(frozen=True, slots=True)
class Detections:
    boxes: np.ndarray  # int32 (N, 4): x, y, w, h in frame pixels, sorted by score
    scores: np.ndarray  # float32 (N,)
    # float32 (N, 5, 2) in frame pixels, same order as boxes: YuNet's right eye, left eye,
    # nose tip, right and left mouth corner (the subject's sides); None from detectors
    # without landmarks (Haar). Face alignment (device/align.py) reads the eyes.
    landmarks: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


EMPTY = Detections(np.zeros((0, 4), np.int32), np.zeros((0,), np.float32))


class FaceDetector(ABC):
    name: str = "?"
    can_shrink = False  # whether input_width applies (its min-size logic is in frame px)

    def __init__(self, min_face: int = 24, max_faces: int = 32, input_width: int = 0) -> None:
        self.min_face = max(1, int(min_face))
        self.max_faces = max(1, int(max_faces))
        self.input_width = max(0, int(input_width))
        self.rechecks = 0  # regions re-detected at full resolution (bench figure)

    @abstractmethod
    def _detect(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw float (N, 4) boxes and (N,) scores on an image of any size."""

    def _detect_points(self, bgr: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """`_detect` plus raw float (N, 5, 2) landmarks where the detector has them."""
        boxes, scores = self._detect(bgr)
        return boxes, scores, None

    def describe(self) -> str:
        return self.name

    def shrink_factor(self, w: int) -> float:
        """The factor (<= 1) a frame w pixels wide is shrunk by before detection: down to
        input_width, but never so far that a min_face face drops below YUNET_MIN_PX."""
        if not (self.can_shrink and self.input_width) or w <= self.input_width:
            return 1.0
        return min(1.0, max(self.input_width / w, YUNET_MIN_PX / self.min_face))

    def detect(self, frame: np.ndarray) -> Detections:
        h, w = frame.shape[:2]
        shrink = self.shrink_factor(w)
        if shrink < 1.0:
            # Shrink before any colour conversion; an integer factor takes INTER_AREA's
            # fast path (and averages, which keeps small faces' edges).
            size = (max(1, round(w * shrink)), max(1, round(h * shrink)))
            exact = abs(1 / shrink - round(1 / shrink)) < 1e-6
            small = cv2.resize(_as_uint8(frame), size,
                               interpolation=cv2.INTER_AREA if exact else cv2.INTER_LINEAR)
            boxes, scores, points = self._detect_points(_as_bgr(small))
            if boxes.shape[0] == 0:
                return EMPTY
            boxes = boxes * np.array([w / size[0], h / size[1]] * 2, np.float32)
            if points is not None:
                points = points * np.array([w / size[0], h / size[1]], np.float32)
            boxes, scores, points = self._recheck(frame, boxes, scores, points)
            return self._finish(boxes, scores, w, h, 1.0, points)
        bgr = _as_bgr(frame)
        scale, pad = 1.0, 0
        if max(h, w) < SMALL_SIDE:
            scale = SMALL_SIDE / max(h, w)
            bgr = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))),
                             interpolation=cv2.INTER_LINEAR)
            pad = round(SMALL_SIDE * SMALL_PAD)
            bgr = cv2.copyMakeBorder(bgr, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        boxes, scores, points = self._strong(*self._detect_points(bgr))
        if boxes.shape[0] == 0:
            return EMPTY
        if scale != 1.0 or pad:
            boxes = boxes.copy()
            boxes[:, :2] -= pad
            boxes /= scale
            if points is not None:
                points = (points - pad) / scale
        return self._finish(boxes, scores, w, h, scale, points)

    def _strong(self, boxes: np.ndarray, scores: np.ndarray, points: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Drop the weak faces a lowered pass threshold lets through (detectors that
        recheck: a full-frame pass has nothing finer to recheck them with)."""
        return boxes, scores, points

    def _recheck(self, frame: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                 points: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Settle a shrunk pass's weak faces (frame pixels) against the full frame."""
        return self._strong(boxes, scores, points)

    def _finish(self, boxes: np.ndarray, scores: np.ndarray, w: int, h: int,
                scale: float, points: np.ndarray | None = None) -> Detections:
        # Clip to the frame, then drop what is too small; min_face is in frame pixels
        # except for upscaled small images, where every face is small by construction.
        x0 = np.clip(boxes[:, 0], 0, w)
        y0 = np.clip(boxes[:, 1], 0, h)
        x1 = np.clip(boxes[:, 0] + boxes[:, 2], 0, w)
        y1 = np.clip(boxes[:, 1] + boxes[:, 3], 0, h)
        bw, bh = x1 - x0, y1 - y0
        min_side = self.min_face if scale == 1.0 else 8
        keep = (bw >= min_side) & (bh >= min_side)
        if not keep.any():
            return EMPTY
        out = np.stack([x0, y0, bw, bh], axis=1)[keep]
        sc = scores[keep].astype(np.float32)
        order = np.argsort(-sc, kind="stable")[: self.max_faces]
        lms = None if points is None else points[keep][order].astype(np.float32)
        return Detections(np.round(out[order]).astype(np.int32), sc[order], lms)


def _unpack(faces: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FaceDetectorYN's rows (box, 5 landmarks, score) as float32 boxes (N, 4), scores
    (N,) and landmarks (N, 5, 2)."""
    if faces is None or len(faces) == 0:
        return (np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                np.zeros((0, 5, 2), np.float32))
    return (faces[:, :4].astype(np.float32), faces[:, 14].astype(np.float32),
            faces[:, 4:14].reshape(-1, 5, 2).astype(np.float32))


def _as_uint8(frame: np.ndarray) -> np.ndarray:
    if frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 frame, got {frame.dtype}")
    return frame


def _as_bgr(frame: np.ndarray) -> np.ndarray:
    _as_uint8(frame)
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    raise ValueError(f"unsupported frame shape {frame.shape}")


class YuNetDetector(FaceDetector):
    name = "yunet"
    can_shrink = True

    def __init__(self, model_path: Path, score_threshold: float = 0.7,
                 nms_threshold: float = 0.3, min_face: int = 24, max_faces: int = 32,
                 input_width: int = 0, recheck_score: float = 0.0,
                 backend: str = "onnxruntime", threads: int = 1) -> None:
        """recheck_score: in a shrunk pass, faces scoring from this up to score_threshold
        are re-detected in their region of the full frame (0 or >= score_threshold: off;
        a full-frame pass keeps only faces at score_threshold or above either way).
        backend: "onnxruntime" (device/yunet_ort.py: the same faces, about half the CPU)
        or "opencv" (cv2.FaceDetectorYN); threads: onnxruntime's (OpenCV's are global)."""
        super().__init__(min_face, max_faces, input_width)
        if backend not in BACKENDS:
            raise DetectorError(f"unknown YuNet backend {backend!r} (one of {BACKENDS})")
        self.model_path = Path(model_path)
        self.backend = backend
        self.threads = threads
        self._bytes: bytes | None = None
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.recheck_score = recheck_score if 0 < recheck_score < score_threshold else 0.0
        self._size = (320, 240)
        self._net = self._create(self._size, self.recheck_score or score_threshold)
        self._region_net: YuNetNet | None = None

    def _create(self, size: tuple[int, int], threshold: float) -> YuNetNet:
        if self.backend == "onnxruntime":
            return self._create_ort(size, threshold)
        try:
            return cv2.FaceDetectorYN.create(
                str(self.model_path), "", size, threshold, self.nms_threshold, 5000)
        except cv2.error as e:
            raise DetectorError(f"cannot load YuNet model {self.model_path}: "
                                f"{str(e).strip().splitlines()[-1]}") from e

    def _create_ort(self, size: tuple[int, int], threshold: float) -> YuNetNet:
        from device.yunet_ort import ModelFormatError, OrtYuNet

        try:
            if self._bytes is None:
                self._bytes = self.model_path.read_bytes()
            return OrtYuNet(self._bytes, size, threshold, self.nms_threshold, 5000,
                            self.threads)
        except ImportError as e:
            raise DetectorError(f"onnxruntime cannot be imported ({e}): pip install "
                                "onnxruntime, or set detector.backend = \"opencv\"") from None
        except OSError as e:
            raise DetectorError(f"cannot read YuNet model {self.model_path}: "
                                f"{e.strerror or e}") from None
        except ModelFormatError as e:
            raise DetectorError(f"cannot load YuNet model {self.model_path}: {e}") from None
        except Exception as e:  # onnxruntime raises its own types for a corrupt model
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DetectorError(f"cannot load YuNet model {self.model_path}: "
                                f"{first}") from None

    def _strong(self, boxes: np.ndarray, scores: np.ndarray, points: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if not self.recheck_score:
            return boxes, scores, points
        keep = scores >= self.score_threshold
        return boxes[keep], scores[keep], None if points is None else points[keep]

    def _recheck(self, frame: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                 points: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if not self.recheck_score or points is None:  # YuNet always gives points
            return self._strong(boxes, scores, points)
        weak = np.flatnonzero(scores < self.score_threshold)
        if not len(weak):
            return boxes, scores, points
        weak = weak[np.argsort(-scores[weak], kind="stable")][:MAX_RECHECKS]
        found = [self._strong(boxes, scores, points)]
        h, w = frame.shape[:2]
        for k in weak:
            side = REGION_K * float(max(boxes[k, 2], boxes[k, 3]))
            if side < self.min_face:  # too small to count even if confirmed
                continue
            s = int(min(round(side), w, h))
            cx, cy = boxes[k, 0] + boxes[k, 2] / 2, boxes[k, 1] + boxes[k, 3] / 2
            x0 = int(np.clip(round(cx - s / 2), 0, w - s))
            y0 = int(np.clip(round(cy - s / 2), 0, h - s))
            region = cv2.resize(_as_bgr(frame[y0:y0 + s, x0:x0 + s]), (REGION_PX, REGION_PX),
                                interpolation=cv2.INTER_AREA if s > REGION_PX
                                else cv2.INTER_LINEAR)
            if self._region_net is None:
                self._region_net = self._create((REGION_PX, REGION_PX), self.score_threshold)
            self.rechecks += 1
            rb, rs, rp = _unpack(self._region_net.detect(region)[1])
            f = s / REGION_PX
            found.append((rb * f + np.array([x0, y0, 0, 0], np.float32), rs,
                          rp * f + np.array([x0, y0], np.float32)))
        all_b = np.concatenate([b for b, _, _ in found])
        all_s = np.concatenate([sc for _, sc, _ in found])
        all_p = np.concatenate([pt for _, _, pt in found if pt is not None])
        # A face a region found twice, or again beside the shrunk pass's sure one, once.
        keep = np.asarray(cv2.dnn.NMSBoxes(all_b.tolist(), all_s.tolist(), 0.0,
                                           self.nms_threshold), int).reshape(-1)
        return all_b[keep], all_s[keep], all_p[keep]

    def describe(self) -> str:
        return f"yunet ({self.model_path.name}, {self.backend})"

    def _detect(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes, scores, _ = self._detect_points(bgr)
        return boxes, scores

    def _detect_points(self, bgr: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        size = (bgr.shape[1], bgr.shape[0])
        if size != self._size:  # reshaping the network is costly: only when needed
            self._net.setInputSize(size)
            self._size = size
        return _unpack(self._net.detect(bgr)[1])


class HaarDetector(FaceDetector):
    """Fallback. Scores are the cascade's level weights squashed into (0, 1): usable
    for ordering and the max_faces cap, not calibrated like YuNet's."""

    name = "haar"

    def __init__(self, min_face: int = 24, max_faces: int = 32,
                 cascade: str | None = None) -> None:
        super().__init__(min_face, max_faces)
        data = getattr(cv2, "data", None)
        path = cascade or (data.haarcascades + "haarcascade_frontalface_default.xml"
                           if data is not None else "")
        self._cc = cv2.CascadeClassifier(path) if path else cv2.CascadeClassifier()
        if self._cc.empty():
            raise DetectorError(f"cannot load the Haar cascade {path or '(none shipped)'}; "
                                "this OpenCV build has no cascades: provide the YuNet model")

    def _detect(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gray = cv2.equalizeHist(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
        rects, _, weights = self._cc.detectMultiScale3(
            gray, scaleFactor=1.1, minNeighbors=5,
            minSize=(min(self.min_face, 24), min(self.min_face, 24)), outputRejectLevels=True)
        if len(rects) == 0:
            return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
        w = np.asarray(weights, np.float32).reshape(-1)
        return np.asarray(rects, np.float32).reshape(-1, 4), 1.0 / (1.0 + np.exp(-w))


def find_yunet(configured: Path | None) -> Path | None:
    """The configured YuNet file if it exists, else the development copy beside the
    repo, else None."""
    for p in (configured, DEV_YUNET):
        if p is not None and Path(p).is_file():
            return Path(p)
    return None


def set_threads(n: int) -> None:
    """OpenCV's worker threads, for the whole process (detection, resizing, decoding)."""
    cv2.setNumThreads(max(1, int(n)))


def make_detector(model_path: Path | None = None, kind: str = "auto",
                  score_threshold: float = 0.7, nms_threshold: float = 0.3,
                  min_face: int = 24, max_faces: int = 32,
                  input_width: int = 0, recheck_score: float = 0.0,
                  backend: str = "onnxruntime", threads: int = 1) -> FaceDetector:
    """kind: "auto" (YuNet if found, else Haar with a warning), "yunet" or "haar".
    input_width: shrink frames to this width for detection (YuNet only; 0 = never);
    recheck_score, backend, threads: see YuNetDetector."""
    if kind == "haar":
        return HaarDetector(min_face, max_faces)
    path = find_yunet(model_path)
    if path is not None:
        return YuNetDetector(path, score_threshold, nms_threshold, min_face, max_faces,
                             input_width, recheck_score, backend, threads)
    if kind == "yunet":
        raise DetectorError(f"YuNet model not found at {model_path or DEV_YUNET} (download "
                            f"{YUNET_FILE} from opencv_zoo or set detector.kind = \"haar\")")
    log.warning("YuNet model not found (%s): falling back to the Haar cascade, which is "
                "slower and misses more faces", model_path or DEV_YUNET)
    return HaarDetector(min_face, max_faces)

"""The pipeline: frame -> detect -> crop -> classify -> track -> aggregate -> sink.

No MQTT, no threads, no clock: the caller supplies frames with timestamps and a sink
for finished window payloads (the daemon's spool/publisher, replay's printer). Each
stage's time is accumulated for `moodcam bench` and the status message.

A Schedule (device.schedule) decides which frames are detected and which faces are
classified; the default, Schedule(), does both for every face of every frame. A face
not classified in a frame counts in the window's detections under its track's current
mood.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from device.aggregate import Aggregator
from device.align import face_input
from device.classify import Classifier, Mood
from device.detect import Detections, FaceDetector
from device.preprocess import crop_square, face_tensor, to_gray
from device.schedule import DetectGate, Schedule
from device.track import Tracker

STAGES = ("capture", "detect", "crop", "classify", "track", "aggregate", "publish")
Sink = Callable[[dict[str, Any]], Any]


class StageTimes:
    """Cumulative seconds and call counts per stage."""

    def __init__(self) -> None:
        self.total = dict.fromkeys(STAGES, 0.0)
        self.calls = dict.fromkeys(STAGES, 0)
        self.frames = 0
        self.detected = 0  # frames the detector ran on
        self.classified = 0  # faces classified (each costs views_per_face invocations)

    def add(self, stage: str, seconds: float) -> None:
        self.total[stage] += seconds
        self.calls[stage] += 1

    def per_frame_ms(self) -> dict[str, float]:
        """Mean milliseconds per processed frame for each stage."""
        n = max(self.frames, 1)
        return {s: round(self.total[s] * 1000 / n, 3) for s in STAGES}


@dataclass(frozen=True, slots=True)
class FaceResult:
    box: tuple[int, int, int, int]
    score: float
    mood: Mood
    track_id: int


def model_info(classifier: Classifier) -> dict[str, str]:
    m = classifier.manifest
    return {"name": m.name, "version": m.version, "sha256": m.model_sha256}


class Pipeline:
    def __init__(self, detector: FaceDetector, classifier: Classifier, tracker: Tracker,
                 aggregator: Aggregator, sink: Sink | None = None,
                 times: StageTimes | None = None, schedule: Schedule | None = None) -> None:
        self.detector = detector
        self.classifier = classifier
        self.tracker = tracker
        self.aggregator = aggregator
        self.sink = sink
        self.times = times or StageTimes()
        self.schedule = schedule or Schedule()
        self._gate = DetectGate(self.schedule.detect_every, self.schedule.scene_change)
        self._scores: dict[int, float] = {}  # track id -> score at its last detection
        self._pre = pre = classifier.manifest.preprocessing
        self._size, self._scale, self._shift = pre.size, pre.crop_scale, pre.crop_shift_y
        self.windows_emitted = 0
        self.last_fps = 0.0

    @classmethod
    def build(cls, detector: FaceDetector, classifier: Classifier, device_id: str,
              window_s: float = 60.0, sink: Sink | None = None,
              tracker: Tracker | None = None, content_id: str | None = None,
              times: StageTimes | None = None, schedule: Schedule | None = None,
              **clock: Any) -> Pipeline:
        """clock: the Aggregator's stream, seq, release, offset, synced and
        step_tolerance_s."""
        tracker = tracker or Tracker()
        agg = Aggregator(device_id, classifier.labels, model_info(classifier), window_s,
                         grace_s=tracker.max_age_s, content_id=content_id, **clock)
        return cls(detector, classifier, tracker, agg, sink, times, schedule)

    # -- stages ----------------------------------------------------------------
    def detect(self, frame: np.ndarray) -> Detections:
        t0 = time.perf_counter()
        dets = self.detector.detect(frame)
        self.times.add("detect", time.perf_counter() - t0)
        return dets

    def classify(self, frame: np.ndarray, dets: Detections) -> list[Mood]:
        return self._classify_boxes(frame, dets.boxes, dets.landmarks)

    def _classify_boxes(self, frame: np.ndarray, boxes: np.ndarray,
                        landmarks: np.ndarray | None = None) -> list[Mood]:
        """landmarks: (N, 5, 2) for the boxes, used when the manifest aligns faces."""
        if not len(boxes):
            return []
        t0 = time.perf_counter()
        if landmarks is not None and self._pre.align == "eyes":
            # Alignment warps the gray frame, exactly as training aligns gray faces.
            gray = to_gray(frame)
            faces = [face_input(gray, box, lm, self._pre)
                     for box, lm in zip(boxes, landmarks, strict=True)]
        else:
            # Crop the colour frame and gray only the crop: the same pixels as graying the
            # whole frame first (a per-pixel conversion), for a fraction of the work.
            faces = [face_tensor(crop_square(frame, box, self._scale, self._shift),
                                 self._size) for box in boxes]
        t1 = time.perf_counter()
        moods = [self.classifier.classify(f) for f in faces]
        t2 = time.perf_counter()
        self.times.add("crop", t1 - t0)
        self.times.add("classify", t2 - t1)
        self.times.classified += len(faces)
        return moods

    def process(self, frame: np.ndarray, ts: float) -> list[FaceResult]:
        """Run one frame through every stage; finished windows go to the sink."""
        sch, tr = self.schedule, self.tracker
        t0 = time.perf_counter()
        fresh = self._gate.due(frame)
        dets = self.detector.detect(frame) if fresh else None
        t1 = time.perf_counter()
        if dets is not None:
            boxes = dets.boxes
            ids, finished = tr.associate(ts, boxes)
            self._scores = dict(zip(ids, dets.scores.tolist(), strict=True))
            due = [k for k, tid in enumerate(ids)
                   if tr.due(tid, sch.classify_every, sch.settle_after)]
        else:  # carried: no new boxes, so nothing worth a new classification
            ids, boxes = tr.carry(ts)
            finished, due = [], []
        t2 = time.perf_counter()
        lms = None if dets is None or dets.landmarks is None else dets.landmarks[due]
        fresh_moods = dict(zip(due, self._classify_boxes(frame, boxes[due], lms), strict=True))
        t3 = time.perf_counter()
        moods = []
        for k, tid in enumerate(ids):
            if k in fresh_moods:
                tr.record(tid, fresh_moods[k])
                moods.append(fresh_moods[k])
            else:
                moods.append(tr.mood_of(tid))
        t4 = time.perf_counter()
        self.aggregator.add_tracks(finished)
        payloads = self.aggregator.add_frame(ts, moods)
        t5 = time.perf_counter()
        self.times.add("detect", t1 - t0)
        self.times.add("track", (t2 - t1) + (t4 - t3))
        self.times.add("aggregate", t5 - t4)
        self.times.frames += 1
        self.times.detected += dets is not None
        self._emit(payloads)
        return [FaceResult((int(b[0]), int(b[1]), int(b[2]), int(b[3])),
                           self._scores.get(i, 0.0), m, i)
                for b, m, i in zip(boxes, moods, ids, strict=True)]

    def tick(self, ts: float) -> None:
        """Let time pass without a frame: tracks age out, windows open and close on time
        (a camera absent from the start still gives windows with frames: 0)."""
        self.aggregator.begin(ts)
        _, finished = self.tracker.update(ts, np.zeros((0, 4)))
        self.aggregator.add_tracks(finished)
        self._emit(self.aggregator.poll(ts))

    def set_content(self, content_id: str | None, ts: float) -> None:
        self._emit(self.aggregator.set_content(content_id, ts))

    def set_clock(self, ts: float, offset: float, synced: bool) -> None:
        """The wall clock now reads ts + offset (see Aggregator.set_clock)."""
        self._emit(self.aggregator.set_clock(ts, offset, synced))

    def snapshot(self, ts: float) -> list[tuple[dict[str, Any], tuple[float, float], bool]]:
        """The crash checkpoint: held and open windows with the viewers on screen."""
        return self.aggregator.snapshot(ts, self.tracker.snapshot())

    def close(self, ts: float) -> None:
        """End every track and emit the final (partial) window."""
        self.aggregator.add_tracks(self.tracker.finish_all())
        self._emit(self.aggregator.close(ts))

    def _emit(self, payloads: list[dict[str, Any]]) -> None:
        for p in payloads:
            self.windows_emitted += 1
            self.last_fps = p["fps"]
            if self.sink is not None:
                t0 = time.perf_counter()
                self.sink(p)
                self.times.add("publish", time.perf_counter() - t0)

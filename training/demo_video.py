"""`moodcam-train demo-video`: a video of FER test faces for `moodcam replay`.

Each segment shows one test face of the named emotion for a few seconds, enlarged to
camera size and drifting slightly, in a JPEG-compressed 640x480 frame, so a replay must
count one viewer per segment and gives that viewer the model's mood for the face.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from training.camera_eval import FRAME_H, FRAME_W
from training.data import DataError, load_splits


def pick_faces(data: Path, emotions: list[str], split: str = "test") -> list[tuple[str, str,
                                                                                   np.ndarray]]:
    """(emotion, file name, image) per requested emotion: the k-th face of an emotion is
    its k-th image by file name, so the video is the same on every machine."""
    splits, _ = load_splits(data, drop_twins=False)
    chosen = splits.get(split) or next(iter(splits.values()))
    by_emotion: dict[str, list[tuple[str, np.ndarray]]] = {}
    for img, emo, name in sorted(zip(chosen.images, chosen.emotions, chosen.names,
                                     strict=True), key=lambda t: t[2]):
        by_emotion.setdefault(emo, []).append((name, img))
    out, used = [], {e: 0 for e in emotions}
    for emo in emotions:
        faces = by_emotion.get(emo, [])
        if used[emo] >= len(faces):
            raise DataError(f"{data} has {len(faces)} '{emo}' faces; asked for more")
        name, img = faces[used[emo]]
        used[emo] += 1
        out.append((emo, name, img))
    return out


def write_demo_video(faces: list[np.ndarray], out: Path, seconds: float = 10.0,
                     fps: float = 10.0, side: int = 150, gap: float = 2.0) -> int:
    """Write the segments, each ending with `gap` seconds of an empty scene (longer than
    the tracker's max_age_s, so each face is a new person); returns the frame count."""
    vw = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"MJPG"), fps, (FRAME_W, FRAME_H))
    if not vw.isOpened():
        raise DataError(f"cannot write {out} (OpenCV has no MJPG writer?)")
    n = 0
    per, shown = round(seconds * fps), round((seconds - gap) * fps)
    for face in faces:
        big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
        for i in range(per):
            frame = np.full((FRAME_H, FRAME_W), 110, np.uint8)
            if i < shown:
                # A slow sway, as a person reading a screen: the tracker keeps one track.
                x = int(FRAME_W / 2 - side / 2 + 40 * np.sin(2 * np.pi * i / shown))
                y = FRAME_H // 2 - side // 2
                frame[y:y + side, x:x + side] = big
            vw.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
            n += 1
    vw.release()
    return n

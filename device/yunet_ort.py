"""YuNet on onnxruntime, with cv2.FaceDetectorYN's interface and results.

On one core here onnxruntime runs YuNet about twice as fast as OpenCV's DNN module on a
640x480 frame (README, Benchmark). The pre- and post-processing are OpenCV's
(modules/objdetect/src/face_detect.cpp): the image padded with zeros to a multiple of 32,
BGR as float, then per stride the score sqrt(cls * obj), the box and the five landmarks
decoded from the cell, and cv2.dnn.NMSBoxes on integer boxes, so either backend gives the
same faces (tests/test_detect_ort.py).

The ONNX file fixes its input at 640x640, which OpenCV overrides at will but onnxruntime
only when the dimensions are symbolic. `dynamic_model` rewrites them in the model bytes
(same length, so nothing else moves) instead of shipping a second model file or the
`onnx` package on the Pi; the file's sha256 is checked by the installer before.
"""

from __future__ import annotations

import cv2
import numpy as np

STRIDES = (8, 16, 32)
DIVISOR = 32
OUTPUTS = tuple(f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in STRIDES)


class ModelFormatError(ValueError):
    """The bytes are not the ONNX model layout this rewrite understands."""


def _varint(buf: bytes | bytearray, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf):
            raise ModelFormatError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ModelFormatError("varint too long")


def _fields(buf: bytes | bytearray, start: int, end: int
            ) -> list[tuple[int, int, int, int, int]]:
    """Protobuf fields in buf[start:end]: (number, wire type, tag start, value start,
    value end); value start/end delimit the payload of length-delimited fields."""
    out = []
    i = start
    while i < end:
        tag_at = i
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            _, j = _varint(buf, i)
            out.append((num, wt, tag_at, i, j))
        elif wt == 1:
            j = i + 8
            out.append((num, wt, tag_at, i, j))
        elif wt == 2:
            n, i = _varint(buf, i)
            j = i + n
            out.append((num, wt, tag_at, i, j))
        elif wt == 5:
            j = i + 4
            out.append((num, wt, tag_at, i, j))
        else:
            raise ModelFormatError(f"unsupported wire type {wt}")
        if j > end:
            raise ModelFormatError("field runs past its message")
        i = j
    return out


def _sub(buf: bytearray, span: tuple[int, int], number: int) -> list[tuple[int, int]]:
    return [(s, e) for n, wt, _, s, e in _fields(buf, *span) if n == number and wt == 2]


# ModelProto.graph = 7; GraphProto.input = 11, output = 12, value_info = 13;
# ValueInfoProto.type = 2; TypeProto.tensor_type = 1; Tensor.shape = 2;
# TensorShapeProto.dim = 1; Dimension.dim_value = 1 (varint), dim_param = 2 (string).
_GRAPH, _INPUT, _OUTPUT, _VALUE_INFO = 7, 11, 12, 13
_HIDDEN = 9  # a reserved GraphProto number: parsers skip it as an unknown field


def dynamic_model(data: bytes) -> bytes:
    """The model with every input/output dimension of 128 or more made symbolic (one
    letter each, all different) and the intermediate shape hints (value_info, fixed for
    640x640) hidden, so onnxruntime infers shapes for the size it is given."""
    buf = bytearray(data)
    graphs = _sub(buf, (0, len(buf)), _GRAPH)
    if len(graphs) != 1:
        raise ModelFormatError("no single graph")
    graph = graphs[0]
    names = iter("hwabcdefgijklmnopqrstuvxyz")
    rewritten = 0
    for number, wt, tag_at, _s, _e in _fields(buf, *graph):
        if number == _VALUE_INFO and wt == 2 and buf[tag_at] == (_VALUE_INFO << 3 | 2):
            buf[tag_at] = _HIDDEN << 3 | 2  # one-byte tags both: nothing moves
    for number in (_INPUT, _OUTPUT):
        for vi in _sub(buf, graph, number):
            for tp in _sub(buf, vi, 2):
                for tensor in _sub(buf, tp, 1):
                    for shape in _sub(buf, tensor, 2):
                        for dim in _sub(buf, shape, 1):
                            rewritten += _symbolic(buf, dim, names)
    if not rewritten:
        raise ModelFormatError("no fixed input/output dimensions to free")
    return bytes(buf)


def _symbolic(buf: bytearray, dim: tuple[int, int], names: object) -> int:
    f = _fields(buf, *dim)
    if len(f) != 1 or f[0][0] != 1 or f[0][1] != 0:
        return 0
    _, _, tag_at, _, end = f[0]
    value, _ = _varint(buf, tag_at + 1)
    if end - tag_at != 3 or value < 128:  # a two-byte varint: same size as "\x12\x01" + c
        return 0
    buf[tag_at:end] = b"\x12\x01" + next(names).encode()  # type: ignore[call-overload]
    return 1


class OrtYuNet:
    """cv2.FaceDetectorYN's setInputSize/detect on an onnxruntime session."""

    def __init__(self, model: bytes, size: tuple[int, int], score_threshold: float,
                 nms_threshold: float, top_k: int = 5000, threads: int = 1) -> None:
        import onnxruntime as ort  # the adapter's runtime: imported only here

        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, threads)
        so.inter_op_num_threads = 1
        # Spinning workers burn a core between frames: the CPU share is what counts here.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        self._sess = ort.InferenceSession(dynamic_model(model), so,
                                          providers=["CPUExecutionProvider"])
        shape = self._sess.get_inputs()[0].shape
        if len(shape) != 4 or isinstance(shape[2], int) or isinstance(shape[3], int):
            raise ModelFormatError(f"input shape {shape} stayed fixed")
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        self.setInputSize(size)

    def setInputSize(self, size: tuple[int, int]) -> None:
        self._w, self._h = size
        self._pad_w = ((self._w - 1) // DIVISOR + 1) * DIVISOR
        self._pad_h = ((self._h - 1) // DIVISOR + 1) * DIVISOR
        self._blob = np.zeros((1, 3, self._pad_h, self._pad_w), np.float32)

    def detect(self, image: np.ndarray) -> tuple[int, np.ndarray | None]:
        h, w = image.shape[:2]
        if (w, h) != (self._w, self._h):
            raise ValueError(f"image is {w}x{h}, input size {self._w}x{self._h}")
        # The padding stays zero: only the image's part of the blob is written.
        self._blob[0, :, :h, :w] = image.transpose(2, 0, 1)
        out = dict(zip(OUTPUTS, self._sess.run(list(OUTPUTS), {"input": self._blob}),
                       strict=True))
        return 1, self._decode(out)

    def _decode(self, out: dict[str, np.ndarray]) -> np.ndarray | None:
        rows = []
        for s in STRIDES:
            cols = self._pad_w // s
            cls = np.clip(out[f"cls_{s}"].reshape(-1), 0, 1)
            obj = np.clip(out[f"obj_{s}"].reshape(-1), 0, 1)
            score = np.sqrt(cls * obj)
            idx = np.flatnonzero(score >= self.score_threshold)
            if not len(idx):
                continue
            r, c = (idx // cols).astype(np.float32), (idx % cols).astype(np.float32)
            bb = out[f"bbox_{s}"].reshape(-1, 4)[idx]
            kp = out[f"kps_{s}"].reshape(-1, 5, 2)[idx]
            bw, bh = np.exp(bb[:, 2]) * s, np.exp(bb[:, 3]) * s
            x1 = (c + bb[:, 0]) * s - bw / 2
            y1 = (r + bb[:, 1]) * s - bh / 2
            lx = (kp[:, :, 0] + c[:, None]) * s
            ly = (kp[:, :, 1] + r[:, None]) * s
            pts = np.stack([lx, ly], axis=2).reshape(-1, 10)
            rows.append(np.column_stack([x1, y1, bw, bh, pts, score[idx]]).astype(np.float32))
        if not rows:
            return None
        faces = np.concatenate(rows)
        if len(faces) > 1:
            # OpenCV's NMS runs on integer boxes (Rect2i), with eta 1 and top_k.
            boxes = [[int(v) for v in f[:4]] for f in faces]
            keep = cv2.dnn.NMSBoxes(boxes, faces[:, 14].tolist(), self.score_threshold,
                                    self.nms_threshold, 1.0, self.top_k)
            faces = faces[np.asarray(keep, int).reshape(-1)]
        return faces

"""The int8 model runtime behind one small interface.

ai-edge-litert (the maintained successor of tflite-runtime) is preferred: it is much
faster here and works with numpy 2. tflite-runtime stays supported for Pi images that
already carry it. Each is imported only inside its loader.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

log = logging.getLogger(__name__)

RuntimeName = Literal["ai-edge-litert", "tflite-runtime"]
RUNTIMES: tuple[RuntimeName, ...] = ("ai-edge-litert", "tflite-runtime")


class RuntimeUnavailable(RuntimeError):
    """No interpreter package could be imported."""


class ModelLoadError(RuntimeError):
    """The model file exists but the runtime cannot use it."""


def _litert() -> Any:
    from ai_edge_litert.interpreter import Interpreter
    return Interpreter


def _tflite() -> Any:
    from tflite_runtime.interpreter import Interpreter
    return Interpreter


_LOADERS: dict[RuntimeName, Callable[[], Any]] = {
    "ai-edge-litert": _litert, "tflite-runtime": _tflite}


def available_runtimes() -> list[RuntimeName]:
    found: list[RuntimeName] = []
    for name in RUNTIMES:
        try:
            _LOADERS[name]()
        except Exception:  # ImportError, or a binary wheel broken under this numpy
            continue
        found.append(name)
    return found


class Interpreter:
    """One loaded model: int tensors in, int tensors out, batch of one."""

    def __init__(self, model_path: Path, prefer: RuntimeName | None = None,
                 num_threads: int = 1) -> None:
        order = list(RUNTIMES)
        if prefer is not None:
            order.remove(prefer)
            order.insert(0, prefer)
        cls = None
        errors = []
        for name in order:
            try:
                cls = _LOADERS[name]()
            except Exception as e:
                errors.append(f"{name}: {e}")
                continue
            self.runtime: RuntimeName = name
            break
        if cls is None:
            raise RuntimeUnavailable(
                "no TFLite runtime importable (" + "; ".join(errors)
                + "); install with: pip install ai-edge-litert")
        try:
            self._it = cls(model_path=str(model_path), num_threads=num_threads)
            self._it.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelLoadError(f"{self.runtime} cannot load {model_path}: "
                                 f"{str(e).splitlines()[0] if str(e) else e}") from e
        ins = self._it.get_input_details()
        outs = self._it.get_output_details()
        if len(ins) != 1 or len(outs) != 1:
            raise ModelLoadError(f"{model_path}: expected one input and one output tensor")
        self._in, self._out = ins[0], outs[0]

    @property
    def input_shape(self) -> list[int]:
        return [int(v) for v in self._in["shape"]]

    @property
    def output_shape(self) -> list[int]:
        return [int(v) for v in self._out["shape"]]

    @property
    def input_dtype(self) -> str:
        return str(np.dtype(self._in["dtype"]))

    @property
    def output_dtype(self) -> str:
        return str(np.dtype(self._out["dtype"]))

    @property
    def input_quant(self) -> tuple[float, int]:
        scale, zp = self._in["quantization"]
        return float(scale), int(zp)

    @property
    def output_quant(self) -> tuple[float, int]:
        scale, zp = self._out["quantization"]
        return float(scale), int(zp)

    def invoke(self, x: np.ndarray) -> np.ndarray:
        """x: one input tensor without the batch dimension, already quantised."""
        self._it.set_tensor(self._in["index"], x[None, ...])
        self._it.invoke()
        return np.array(self._it.get_tensor(self._out["index"])[0])

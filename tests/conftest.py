"""Shared fixtures: paths to ../shared material, the shipped model, real face images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest_plugins = ["tests.broker", "tests.pg"]

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
FER_ZIP = SHARED / "data" / "fer2013.zip"
YUNET = SHARED / "models" / "yunet" / "face_detection_yunet_2023mar.onnx"
MODELS = ROOT / "models"


def need_shared(path: Path) -> Path:
    """Skip, saying why, on a machine without ../shared (CI has it, so these run there)."""
    if not path.exists():
        pytest.skip(f"needs {path} from ../shared beside the project (present in CI)")
    return path


@pytest.fixture(scope="session")
def fer_zip() -> Path:
    return need_shared(FER_ZIP)


@pytest.fixture(scope="session")
def yunet_path() -> Path:
    return need_shared(YUNET)


@pytest.fixture(scope="session")
def model_dir() -> Path:
    if not (MODELS / "manifest.json").exists():
        pytest.fail("models/manifest.json is missing: the shipped model is part of the repo")
    return MODELS


@pytest.fixture(scope="session")
def astronaut_bgr() -> np.ndarray:
    """A real smiling face (scikit-image's astronaut photo), as OpenCV's BGR."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])

"""keraffe.verify.opencv_runtime without OpenCV: OpenCV is an extra, and its absence is one clear error."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from keraffe.verify.opencv_runtime import OpenCVRuntimeError, run_opencv, time_opencv

MESSAGE = "OpenCV is not installed: pip install 'keraffe[opencv]' (OpenCV 4.x DNN)"


@pytest.mark.parametrize("call", [
    lambda p: run_opencv(p, None, {"data": np.zeros((1, 1, 2, 2), np.float32)}, ["data"]),
    lambda p: time_opencv(p, p, {"data": np.zeros((1, 1, 2, 2), np.float32)}),
], ids=["run", "time"])
def test_missing_opencv_names_the_extra(call, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now fails as it does where OpenCV is absent
    with pytest.raises(OpenCVRuntimeError) as raised:
        call(tmp_path / "net.prototxt")
    assert str(raised.value) == MESSAGE

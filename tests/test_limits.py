"""keraffe.limits: the element cap, expansion and nesting bounds that readers check before allocating."""

from __future__ import annotations

import re

import pytest

from keraffe import limits
from keraffe.errors import KeraffeError, LimitError


def test_count_is_exact_where_numpy_would_wrap():
    import numpy as np

    shape = (2**62, 4, 1, 1)
    assert int(np.prod(np.array(shape, dtype=np.int64))) == 0  # what the old readers compared
    assert limits.count(shape) == 2**64


def test_the_default_cap_and_a_shape_over_it():
    assert limits.max_elements() == limits.DEFAULT_MAX_ELEMENTS == 2**28
    assert limits.check_elements("x", (16384, 16384)) == 2**28
    with pytest.raises(LimitError, match=r"layer 'ip' declares shape \(1, 2147483647\): 2,147,483,647 values, "
                                         r"over keraffe's cap of 268,435,456 per tensor; raise the cap with "
                                         r"--max-elements"):
        limits.check_elements("layer 'ip'", (1, 2**31 - 1))


def test_element_cap_sets_the_cap_for_a_block_and_restores_it():
    with limits.element_cap(10) as cap:
        assert cap == limits.max_elements() == 10
        with pytest.raises(LimitError, match="over keraffe's cap of 10 per tensor"):
            limits.check_elements("t", (11,))
        with limits.element_cap(None):
            assert limits.max_elements() == 10
    assert limits.max_elements() == limits.DEFAULT_MAX_ELEMENTS
    with pytest.raises(LimitError, match="must be a positive number"):
        with limits.element_cap(0):
            pass


def test_check_total():
    limits.check_total("net", limits.DEFAULT_MAX_ELEMENTS)
    with pytest.raises(LimitError, match=r"net declares 268,435,457 values in total"):
        limits.check_total("net", limits.DEFAULT_MAX_ELEMENTS + 1)


def test_expansion_bound():
    allowed = limits.expansion_allowed(1000)
    assert allowed == 1000 * limits.MAX_EXPANSION + limits.EXPANSION_SLACK
    limits.check_expansion("member", 1000, allowed)
    with pytest.raises(LimitError, match=r"member would expand from 1,000 stored bytes to .* more than 32x"):
        limits.check_expansion("member", 1000, allowed + 1)


def test_check_declared_refuses_weights_bigger_than_their_file():
    tensors = [("dense/kernel", (1000, 1000), 4), ("dense/bias", (1000,), 4)]
    limits.check_declared("m.keras", tensors, stored_bytes=4_004_000)
    with pytest.raises(LimitError, match=re.escape("m.keras: the model declares weights of 4,004,000 bytes (the "
                                                   "largest, 'dense/kernel', of shape (1000, 1000)), but its weights "
                                                   "file holds 1,000 bytes; they cannot come from it")):
        limits.check_declared("m.keras", tensors, stored_bytes=1000)
    with limits.element_cap(999_999):
        with pytest.raises(LimitError, match="'dense/kernel' declares shape"):
            limits.check_declared("m.keras", tensors, stored_bytes=None)
    with limits.element_cap(1_000_000):
        with pytest.raises(LimitError, match="the weights declares 1,001,000 values in total"):
            limits.check_declared("m.keras", tensors, stored_bytes=None)


def test_nesting_overflow_skips_what_the_tokens_pattern_skips():
    tokens = re.compile(r'"[^"]*"|[{}]')
    assert limits.nesting_overflow("{" * limits.MAX_NESTING + "}" * limits.MAX_NESTING, tokens, "{") is None
    assert limits.nesting_overflow("{" * (limits.MAX_NESTING + 1), tokens, "{") == limits.MAX_NESTING
    assert limits.nesting_overflow('"' + "{" * 1000 + '"', tokens, "{") is None
    assert limits.nesting_overflow("{}" * 10_000, tokens, "{") is None


# ------------------------------------------------------------------ .npy / .npz inputs (verify --input, prune --data)


def _npy_header(shape, dtype="<f4") -> bytes:
    import numpy as np

    buffer = __import__("io").BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def test_read_numpy_reads_npy_and_npz(tmp_path):
    import numpy as np

    np.save(tmp_path / "a.npy", np.arange(6, dtype=np.float32).reshape(2, 3))
    np.savez(tmp_path / "b.npz", x=np.ones(3), y=np.zeros((2, 2), np.int64))
    assert limits.read_numpy(tmp_path / "a.npy", "a").tolist() == [[0, 1, 2], [3, 4, 5]]
    arrays = limits.read_numpy(tmp_path / "b.npz", "b")
    assert sorted(arrays) == ["x", "y"] and arrays["y"].shape == (2, 2)


def test_read_numpy_refuses_a_header_declaring_more_than_the_file(tmp_path):
    path = tmp_path / "x.npy"
    path.write_bytes(_npy_header((100000, 100000)))
    with pytest.raises(LimitError, match=r"x declares shape \(100000, 100000\): 10,000,000,000 values"):
        limits.read_numpy(path, "x")
    path.write_bytes(_npy_header((10000, 1000)) + b"\0" * 64)
    with pytest.raises(LimitError, match=r"x declares shape \(10000, 1000\), 40,000,000 bytes, but its file holds"):
        limits.read_numpy(path, "x")


def test_read_numpy_refuses_pickles_and_zip_bombs(tmp_path):
    import zipfile

    import numpy as np

    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(KeraffeError, match="holds Python objects"):
        limits.read_numpy(tmp_path / "o.npy", "o")
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", _npy_header((16 << 20,)) + bytes(64 << 20))
    with pytest.raises(LimitError, match="member x.npy would expand from"):
        limits.read_numpy(tmp_path / "bomb.npz", "bomb")

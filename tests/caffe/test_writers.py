"""write_prototxt and write_caffemodel: byte-identical on every write, and atomic.

Atomic means: when anything fails while the file is being written (an
exception, an interrupt, a failed fsync standing in for a full disk), the
file that was there before is untouched, or there is still no file, and no
temporary file is left beside it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import keraffe.caffe.caffemodel as caffemodel_module
import keraffe.files as files_module
from keraffe.caffe.caffemodel import read_weights, write_caffemodel
from keraffe.caffe.net import load_net
from keraffe.caffe.prototxt import Dialect, read_prototxt, write_prototxt
from keraffe.caffe.upgrade import upgrade_net
from keraffe.errors import CaffeFormatError, KeraffeError
from zoo_nets import REPO, ZOO

SMALL_NET = """
name: "small"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 round_mode: FLOOR } }
layer { name: "ip" type: "InnerProduct" bottom: "pool" top: "ip" inner_product_param { num_output: 5 } }
"""


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.prototxt"
    path.write_text(SMALL_NET)
    net = load_net(path)
    rng = np.random.default_rng(0)
    weights = {n.name: [rng.standard_normal(s).astype(np.float32) for s in n.shapes.params]
               for n in net.layers if n.shapes.params}
    return net, weights


def _temp_files(folder) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


# ------------------------------------------------------------------ determinism


def test_write_caffemodel_is_byte_identical_across_writes(small, tmp_path):
    net, weights = small
    first, second = tmp_path / "a.caffemodel", tmp_path / "b.caffemodel"
    size = write_caffemodel(first, net.to_net_parameter(), weights)
    write_caffemodel(second, net.to_net_parameter(), weights)
    assert first.read_bytes() == second.read_bytes()
    assert size == first.stat().st_size
    assert (first.stat().st_mode & 0o777) == 0o644


@pytest.mark.parametrize("dialect", list(Dialect))
def test_write_prototxt_is_byte_identical_across_writes(dialect, tmp_path):
    net = upgrade_net(read_prototxt(ZOO / "bvlc_googlenet" / "deploy.prototxt"))[0] if ZOO.is_dir() else None
    if net is None:
        pytest.skip(f"model zoo not found at {ZOO}")
    first, second = tmp_path / "a.prototxt", tmp_path / "b.prototxt"
    write_prototxt(first, net, dialect)
    write_prototxt(second, net, dialect)
    assert first.read_bytes() == second.read_bytes()
    # And reading it back and writing again is a fixed point.
    write_prototxt(second, read_prototxt(first), dialect)
    assert first.read_bytes() == second.read_bytes()


def test_writes_do_not_depend_on_the_process(small, tmp_path):
    """Another interpreter, with another hash seed, writes the same bytes."""
    net, weights = small
    proto, model = tmp_path / "here.prototxt", tmp_path / "here.caffemodel"
    write_prototxt(proto, net.to_net_parameter(), Dialect.FORK)
    write_caffemodel(model, net.to_net_parameter(), weights)
    np.savez(tmp_path / "weights.npz", **{f"{k}__{i}": a for k, v in weights.items() for i, a in enumerate(v)})
    (tmp_path / "small.prototxt").write_text(SMALL_NET)
    # The child imports keraffe.caffe without running keraffe/__init__.py, which
    # loads Keras and TensorFlow (10+ s) and has no part in writing Caffe files.
    script = textwrap.dedent(f"""
        import sys, types
        package = types.ModuleType("keraffe")
        package.__path__ = [{str(REPO / "src" / "keraffe")!r}]
        sys.modules["keraffe"] = package
        import numpy as np
        from keraffe.caffe.net import load_net
        from keraffe.caffe.prototxt import Dialect, write_prototxt
        from keraffe.caffe.caffemodel import write_caffemodel
        folder = {str(tmp_path)!r}
        net = load_net(folder + "/small.prototxt")
        weights = {{}}
        with np.load(folder + "/weights.npz") as npz:
            for key in sorted(npz.files, key=lambda k: (k.split("__")[0], int(k.split("__")[1]))):
                weights.setdefault(key.split("__")[0], []).append(npz[key])
        write_prototxt(folder + "/there.prototxt", net.to_net_parameter(), Dialect.FORK)
        write_caffemodel(folder + "/there.caffemodel", net.to_net_parameter(), weights)
    """)
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=str(REPO / "src"), TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True)
    assert (tmp_path / "there.prototxt").read_bytes() == proto.read_bytes()
    assert hashlib.sha256((tmp_path / "there.caffemodel").read_bytes()).hexdigest() == \
        hashlib.sha256(model.read_bytes()).hexdigest()


def test_written_caffemodel_is_what_protobuf_writes(small, tmp_path):
    """The streamed writer's bytes equal protobuf's own serialisation of the same message."""
    from keraffe.caffe.proto import caffe_pb2 as pb

    net, weights = small
    path = tmp_path / "ours.caffemodel"
    write_caffemodel(path, net.to_net_parameter(), weights)
    message = net.to_net_parameter()
    for layer in message.layer:
        for array in weights.get(layer.name, []):
            blob = layer.blobs.add()
            blob.data.extend(array.ravel().tolist())
            blob.shape.dim.extend(array.shape)
    assert path.read_bytes() == message.SerializeToString(deterministic=True)
    parsed = pb.NetParameter()
    parsed.ParseFromString(path.read_bytes())
    assert [l.name for l in parsed.layer] == [n.name for n in net.layers]


# ------------------------------------------------------------------ atomicity


def _failing_chunks(real, after: int, error: BaseException):
    """iter_caffemodel_chunks that yields ``after`` chunks, then raises."""
    def patched(net, weights):
        total, chunks = real(net, weights)

        def broken():
            for i, chunk in enumerate(chunks):
                if i == after:
                    raise error
                yield chunk
        return total, broken()
    return patched


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()],
                         ids=["exception", "interrupt"])
def test_failed_caffemodel_write_keeps_the_old_file(small, tmp_path, monkeypatch, error):
    net, weights = small
    target = tmp_path / "model.caffemodel"
    write_caffemodel(target, net.to_net_parameter(), weights)
    old = target.read_bytes()
    changed = {k: [a + 1 for a in v] for k, v in weights.items()}
    monkeypatch.setattr(caffemodel_module, "iter_caffemodel_chunks",
                        _failing_chunks(caffemodel_module.iter_caffemodel_chunks, 3, error))
    with pytest.raises(type(error)):
        write_caffemodel(target, net.to_net_parameter(), changed)
    assert target.read_bytes() == old
    assert _temp_files(tmp_path) == []


def test_failed_caffemodel_write_leaves_no_new_file(small, tmp_path, monkeypatch):
    net, weights = small
    target = tmp_path / "new.caffemodel"
    monkeypatch.setattr(caffemodel_module, "iter_caffemodel_chunks",
                        _failing_chunks(caffemodel_module.iter_caffemodel_chunks, 2, OSError(28, "No space left")))
    with pytest.raises(KeraffeError, match="No space left"):
        write_caffemodel(target, net.to_net_parameter(), weights)
    assert not target.exists() and _temp_files(tmp_path) == []


def test_failed_fsync_keeps_the_old_prototxt(small, tmp_path, monkeypatch):
    """A failure at the very end of the write (fsync: the disk is full) changes nothing either."""
    net, _ = small
    target = tmp_path / "net.prototxt"
    write_prototxt(target, net.to_net_parameter())
    old = target.read_bytes()
    renamed = net.to_net_parameter()
    renamed.name = "changed"

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files_module.os, "fsync", no_space)
    with pytest.raises(KeraffeError, match="No space left"):
        write_prototxt(target, renamed)
    assert target.read_bytes() == old
    assert _temp_files(tmp_path) == []


def test_prototxt_write_failure_inside_atomic_output(small, tmp_path, monkeypatch):
    net, _ = small
    target = tmp_path / "net.prototxt"
    target.write_text("old content\n")
    real = files_module.atomic_output

    import contextlib

    @contextlib.contextmanager
    def exploding(path, mode="wb"):
        with real(path, mode) as handle:
            handle.write("half a net")
            raise RuntimeError("crash in the middle")
            yield handle  # pragma: no cover

    monkeypatch.setattr("keraffe.caffe.prototxt.atomic_output", exploding)
    with pytest.raises(RuntimeError):
        write_prototxt(target, net.to_net_parameter())
    assert target.read_text() == "old content\n"
    assert _temp_files(tmp_path) == []


def test_caffemodel_over_protobuf_limit_is_refused_before_writing(small, tmp_path, monkeypatch):
    net, weights = small
    monkeypatch.setattr(caffemodel_module, "MAX_MESSAGE_BYTES", 200)
    target = tmp_path / "big.caffemodel"
    with pytest.raises(CaffeFormatError, match="exceed 2 GiB"):
        write_caffemodel(target, net.to_net_parameter(), weights)
    assert not target.exists() and _temp_files(tmp_path) == []


def test_write_into_missing_folder_is_a_keraffe_error(small, tmp_path):
    net, weights = small
    with pytest.raises(KeraffeError, match="does not exist"):
        write_caffemodel(tmp_path / "no" / "such" / "m.caffemodel", net.to_net_parameter(), weights)
    with pytest.raises(KeraffeError, match="does not exist"):
        write_prototxt(tmp_path / "no" / "n.prototxt", net.to_net_parameter())


def test_write_caffemodel_refuses_weights_for_missing_layers(small, tmp_path):
    net, weights = small
    target = tmp_path / "m.caffemodel"
    with pytest.raises(CaffeFormatError, match="ghost"):
        write_caffemodel(target, net.to_net_parameter(), {**weights, "ghost": [np.ones(2)]})
    assert not target.exists() and _temp_files(tmp_path) == []


def test_read_back_after_atomic_write(small, tmp_path):
    net, weights = small
    target = tmp_path / "m.caffemodel"
    write_caffemodel(target, net.to_net_parameter(), weights)
    read = read_weights(target)
    for name, arrays in weights.items():
        assert all(np.array_equal(a, b) for a, b in zip(read.arrays()[name], arrays))


def test_disputed_defaults_are_written_out():
    """Fields whose default differs between forks are written even at keraffe's default."""
    from keraffe.caffe.prototxt import format_prototxt, parse_prototxt

    net = parse_prototxt(
        'layer { name: "p" type: "PriorBox" bottom: "f" bottom: "d" top: "p" prior_box_param { min_size: 30 } }\n'
        'layer { name: "u" type: "Upsample" bottom: "x" top: "u" }\n'
        'layer { name: "v" type: "Upsample" bottom: "x" top: "v" upsample_param { upsample_h: 4 upsample_w: 4 } }\n')
    again = {layer.name: layer for layer in parse_prototxt(format_prototxt(net)).layer}
    assert again["p"].prior_box_param.HasField("clip") and not again["p"].prior_box_param.clip
    assert again["u"].upsample_param.HasField("scale") and again["u"].upsample_param.scale == 2
    assert not again["v"].upsample_param.HasField("scale")

"""Real Caffe (pycaffe) as a reference runtime, always in a child process.

Real Caffe is the ground truth for conversions, but pycaffe must never be
imported into the keraffe process, for two reasons:

* its generated ``caffe_pb2`` registers "caffe.proto" in protobuf's default
  descriptor pool, which collides with keraffe's own Caffe schema;
* a failed ``CHECK`` in Caffe calls ``abort()``: in-process, one bad prototxt
  would kill the whole test run or CLI with no Python exception.

So every call here starts ``_pycaffe_worker.py`` with the pycaffe build on its
``PYTHONPATH``, passes arrays through ``.npz`` files in a temporary directory,
and turns a crash into :class:`CaffeRuntimeError` carrying Caffe's own log.
Each call pays for a fresh process and net setup (about half a second for a
small net); that is the price of isolation, and small next to a conversion.

pycaffe is built and cached by ``tools/build_pycaffe.sh``.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence

import numpy as np

from keraffe.errors import KeraffeError

PYCAFFE_VERSION = "9.0.2"
_WORKER = pathlib.Path(__file__).with_name("_pycaffe_worker.py")
# Enough of Caffe's stderr to show the failing CHECK and the lines before it.
_LOG_TAIL_LINES = 40
_BUILD_HINT = "build it with tools/build_pycaffe.sh, or point $KERAFFE_PYCAFFE at a pycaffe dir"


class CaffeRuntimeError(KeraffeError, RuntimeError):
    """Real Caffe refused or failed to run a net.

    The message ends with the tail of Caffe's stderr (glog and protobuf
    messages), because that is where Caffe says *why*: a failed CHECK, an
    unknown layer type, a prototxt syntax error.
    """


def _cache_dir() -> pathlib.Path:
    root = os.environ.get("KERAFFE_CACHE") or pathlib.Path.home() / ".cache" / "keraffe"
    return pathlib.Path(root) / f"pycaffe-{PYCAFFE_VERSION}"


def find_pycaffe() -> pathlib.Path | None:
    """The directory to put on PYTHONPATH for ``import caffe``, or None.

    ``$KERAFFE_PYCAFFE`` wins so a developer can test against another Caffe
    build.  The cache only counts once its stamp file exists: the build script
    writes it last, so an interrupted build is never picked up.
    """
    override = os.environ.get("KERAFFE_PYCAFFE")
    if override:
        path = pathlib.Path(override).expanduser()
        return path.resolve() if (path / "caffe" / "__init__.py").is_file() else None
    cache = _cache_dir()
    if not (cache / "BUILD_OK").is_file():
        return None
    path = cache / "python"
    return path if (path / "caffe" / "__init__.py").is_file() else None


def pycaffe_available() -> bool:
    """Whether :func:`run_pycaffe` and friends can work; tests skip on False.

    A cached build is tied to one CPython ABI, so a build for another Python
    counts as absent rather than failing later in every test.
    """
    path = find_pycaffe()
    if path is None:
        return False
    stamp = path.parent / "BUILD_OK"
    if not os.environ.get("KERAFFE_PYCAFFE") and stamp.is_file():
        built_for = dict(
            line.split("=", 1) for line in stamp.read_text().splitlines() if "=" in line
        ).get("python")
        if built_for and built_for != "cpython-%d%d" % sys.version_info[:2]:
            return False
    return True


#: glog's line prefix: severity letter, date, time, thread, source file and line.
_GLOG_LINE = re.compile(r"^([IWEF])\d{4,8} [\d:.]+\s+\d+ ([^\]]+)\] ?(.*)$")
#: What the worker prints before each layer it runs (see _pycaffe_worker._forward_by_layer).
_LAYER_MARK = "keraffe-worker: layer "


def _log_tail(stderr: str) -> str:
    """Caffe's own messages, without the worker's layer marks and the abort's stack trace."""
    # glog follows a failed CHECK with a stack trace of addresses; it says
    # nothing the CHECK line does not, and would push it out of the tail.
    stderr = stderr.split("*** Check failure stack trace: ***", 1)[0]
    lines = [
        ln
        for ln in stderr.splitlines()
        if ln.strip() and not ln.startswith(("WARNING: Logging before InitGoogleLogging()", _LAYER_MARK))
    ]
    return "\n".join(lines[-_LOG_TAIL_LINES:])


def caffe_failure(stderr: str) -> tuple[str | None, str | None]:
    """(the layer the worker was running, the text of Caffe's fatal message) from its stderr; either may be None.

    A failed CHECK logs one FATAL line: which condition failed, and usually why.
    """
    layer = check = None
    for ln in stderr.split("*** Check failure stack trace: ***", 1)[0].splitlines():
        if ln.startswith(_LAYER_MARK):
            layer = ln[len(_LAYER_MARK):].strip()
            continue
        glog = _GLOG_LINE.match(ln)
        if glog is not None and glog.group(1) == "F" and check is None:
            check = glog.group(3).strip()
    return layer, check


def _abort_reason(code: int, stderr: str, locate) -> str:
    """Why the worker died, in words: the signal, the layer Caffe was at, and what it checked.

    ``locate`` finds the layer when the worker had not begun to run one (the
    net's setup failed); it returns None where it cannot tell.
    """
    reason = _describe_exit(code)
    layer, check = caffe_failure(stderr)
    if layer is None and code < 0:
        layer = locate()
    if check is None and layer is None:
        return reason
    where = f" in layer '{layer}'" if layer else ""
    text = check if check is not None else "no message"
    if len(text) > 300:
        text = text[:300] + " ..."
    return f"{reason}: real Caffe aborted{where}: {text}"


def _setup_failure_layer(request: dict, tmpdir: pathlib.Path, env: dict, timeout: float) -> str | None:
    """The layer whose setup made Caffe abort, found by setting up ever shorter prefixes of the net.

    Caffe's Net::Init sets layers up in order, each from the ones before it, so
    the first prefix that aborts ends with the layer that did. Binary search: a
    net of N layers costs about log2(N) more runs of the worker, paid only
    after a failure. None when the prototxt cannot be read, or every prefix
    sets up (the failure came later, copying weights, say).
    """
    from google.protobuf import text_format

    from keraffe.caffe.proto import caffe_pb2

    if "prototxt" not in request:
        return None
    net = caffe_pb2.NetParameter()
    try:
        text_format.Parse(pathlib.Path(request["prototxt"]).read_text(), net)
    except (OSError, UnicodeDecodeError, text_format.ParseError):
        return None
    field = "layer" if len(net.layer) else "layers"
    layers = list(getattr(net, field))
    prefix_path = tmpdir / "prefix.prototxt"

    def aborts(count: int) -> bool:
        prefix = caffe_pb2.NetParameter()
        prefix.CopyFrom(net)
        del getattr(prefix, field)[count:]
        prefix_path.write_text(text_format.MessageToString(prefix))
        probe = {"command": "shapes", "blobs": None, "prototxt": str(prefix_path),
                 "answer": str(tmpdir / "probe.json"), "arrays_out": str(tmpdir / "probe.npz")}
        if "caffemodel" in request:
            probe["caffemodel"] = request["caffemodel"]
        (tmpdir / "probe_request.json").write_text(json.dumps(probe))
        try:
            done = subprocess.run([sys.executable, str(_WORKER), str(tmpdir / "probe_request.json")], env=env,
                                  stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return done.returncode < 0

    low, high = 1, len(layers)
    if not layers or not aborts(high):
        return None
    while low < high:
        middle = (low + high) // 2
        if aborts(middle):
            high = middle
        else:
            low = middle + 1
    return layers[low - 1].name or None


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _with_log(message: str, stderr: str) -> str:
    tail = _log_tail(stderr)
    return f"{message}\n--- Caffe log ---\n{tail}" if tail else message


def _call_worker(
    command: str,
    prototxt=None,
    caffemodel=None,
    *,
    inputs: Mapping[str, np.ndarray] | None = None,
    blobs: Sequence[str] | None = None,
    weights: Mapping[str, Sequence[np.ndarray]] | None = None,
    timeout: float = 600,
    output=None,
):
    """Run one command of ``_pycaffe_worker.py`` in a child process and return its decoded answer."""
    pycaffe = find_pycaffe()
    if pycaffe is None:
        raise CaffeRuntimeError(f"pycaffe {PYCAFFE_VERSION} is not available: {_BUILD_HINT}")
    request, what = _request(command, prototxt, caffemodel, blobs)
    if output is not None:
        request["output"] = str(pathlib.Path(output).resolve())
    with tempfile.TemporaryDirectory(prefix="keraffe-pycaffe-") as tmp:
        tmpdir = pathlib.Path(tmp)
        _write_arrays(request, tmpdir, inputs, weights)
        env = _worker_env(pycaffe)
        proc = _run_worker(request, tmpdir, env, what, timeout)
        return _read_answer(proc, tmpdir, what, lambda: _setup_failure_layer(request, tmpdir, env, timeout))


def _request(command: str, prototxt, caffemodel, blobs) -> tuple[dict, str]:
    """The worker's request (paths resolved) and how to name the call in messages."""
    what = f"pycaffe {command}"
    request: dict = {"command": command, "blobs": list(blobs) if blobs is not None else None}
    if prototxt is not None:
        request["prototxt"] = str(pathlib.Path(prototxt).resolve())
        what += f" on {prototxt}"
    if caffemodel is not None:
        request["caffemodel"] = str(pathlib.Path(caffemodel).resolve())
        what += f" with {caffemodel}"
    return request, what


def _worker_env(pycaffe: pathlib.Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(pycaffe), env.get("PYTHONPATH")) if p)
    env.setdefault("GLOG_minloglevel", "2")  # keep INFO/WARNING quiet; errors still show
    env.setdefault("GLOG_logtostderr", "1")  # otherwise glog also litters /tmp with log files
    return env


def _write_arrays(request: dict, tmpdir: pathlib.Path, inputs, weights) -> None:
    """Inputs and weights go to the worker as .npz files, keyed by index (blob names may not suit npz keys)."""
    if inputs:
        names = list(inputs)
        np.savez(tmpdir / "inputs.npz", **{f"x{i}": np.ascontiguousarray(inputs[n], dtype=np.float32)
                                           for i, n in enumerate(names)})
        request["inputs"] = str(tmpdir / "inputs.npz")
        request["input_names"] = names
    if weights:
        layer_names = list(weights)
        np.savez(tmpdir / "weights.npz", **{
            f"w{i}_{j}": np.ascontiguousarray(array, dtype=np.float32)
            for i, name in enumerate(layer_names) for j, array in enumerate(weights[name])})
        request["weights"] = str(tmpdir / "weights.npz")
        request["weight_layers"] = [[name, len(weights[name])] for name in layer_names]
    request["answer"] = str(tmpdir / "answer.json")
    request["arrays_out"] = str(tmpdir / "arrays.npz")
    (tmpdir / "request.json").write_text(json.dumps(request))


def _run_worker(request: dict, tmpdir: pathlib.Path, env: dict, what: str, timeout: float):
    try:
        return subprocess.run(
            [sys.executable, str(_WORKER), str(tmpdir / "request.json")],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr
        if isinstance(err, bytes):
            err = err.decode(errors="replace")
        raise CaffeRuntimeError(_with_log(f"{what} timed out after {timeout:g}s", err or "")) from None


def _read_answer(proc, tmpdir: pathlib.Path, what: str, locate=lambda: None):
    """The worker's decoded answer, or a CaffeRuntimeError carrying Caffe's log (a crash, a refusal).

    After an abort, ``locate`` is asked which layer's setup caused it (see :func:`_setup_failure_layer`).
    """
    answer_path = tmpdir / "answer.json"
    answer = json.loads(answer_path.read_text()) if answer_path.is_file() else None
    if proc.returncode != 0 or answer is None or not answer.get("ok"):
        reason = answer["error"] if answer and "error" in answer else _abort_reason(proc.returncode, proc.stderr,
                                                                                      locate)
        message = _with_log(f"{what} failed: {reason}", proc.stderr)
        if answer and "traceback" in answer:
            message += f"\n--- worker traceback ---\n{answer['traceback'].rstrip()}"
        raise CaffeRuntimeError(message)
    with np.load(tmpdir / "arrays.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    return _decode(answer["value"], arrays)


def _decode(value, arrays: Mapping[str, np.ndarray]):
    if isinstance(value, dict):
        if set(value) == {"__ndarray__"}:
            return arrays[value["__ndarray__"]]
        return {k: _decode(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    return value


def run_pycaffe(
    prototxt,
    caffemodel=None,
    inputs: Mapping[str, np.ndarray] | None = None,
    blobs: Sequence[str] | None = None,
    timeout: float = 600,
    weights: Mapping[str, Sequence[np.ndarray]] | None = None,
) -> dict[str, np.ndarray]:
    """Forward a net through real Caffe, in the TEST phase.

    ``weights`` (layer name -> arrays), instead of a caffemodel, are copied into
    Caffe's own parameter blobs through pycaffe; that is how a net whose weight
    file Caffe's reader refuses (over 512 MiB) still runs in real Caffe.

    Input blobs are reshaped to the given arrays (then ``net.reshape()``), so
    one prototxt serves any batch or image size, as in Caffe deployments.
    Inputs not given keep the prototxt's shape and zero data.  A name in
    ``inputs`` that is not a net input is an error, since forward() would
    silently overwrite it.  ``blobs`` defaults to the net's outputs; note that
    Caffe's in-place layers (ReLU, BatchNorm, ...) leave only the last value
    in a shared blob.  Results are float32 copies, keyed in request order.
    """
    return _call_worker(
        "run", prototxt, caffemodel, inputs=inputs, blobs=blobs, weights=weights, timeout=timeout
    )


def pycaffe_blob_shapes(prototxt, timeout: float = 600) -> dict[str, tuple[int, ...]]:
    """Every blob's shape as Caffe's own shape inference sets it up.

    The reference for keraffe's shape rules; no forward pass is run, so
    random or zero weights do not matter.  Ordered as ``net.blobs``.
    """
    shapes = _call_worker("shapes", prototxt, timeout=timeout)
    return {name: tuple(shape) for name, shape in shapes.items()}


def pycaffe_params(prototxt, caffemodel, timeout: float = 600) -> dict[str, list[np.ndarray]]:
    """Each layer's parameter blobs as Caffe loads them (layer name -> blobs).

    The reference for keraffe's caffemodel reader and writer: Caffe matches
    weights to layers by name, reshapes legacy 4-D blobs, and keeps its
    filler values for layers the caffemodel lacks, without complaint.
    """
    return _call_worker("params", prototxt, caffemodel, timeout=timeout)


def pycaffe_save(prototxt, output, caffemodel=None, timeout: float = 600) -> None:
    """Write the caffemodel real Caffe writes for a net (its weights from the prototxt's fillers, or ``caffemodel``).

    The reference for what Caffe itself puts in a weight file (a shared
    PReLU slope, for one, is a blob with no shape at all).
    """
    _call_worker("save", prototxt, caffemodel, output=output, timeout=timeout)


@functools.lru_cache(maxsize=4)
def _layer_types(pycaffe_dir: str) -> frozenset[str]:
    return frozenset(_call_worker("layer_types"))


def pycaffe_layer_types() -> set[str]:
    """The layer type names this Caffe build registers.

    Forks differ (this build lacks Clip, Swish, Interp, ShuffleChannel), so
    tests ask rather than assume.  Cached per pycaffe dir: it costs a process.
    """
    pycaffe = find_pycaffe()
    if pycaffe is None:
        raise CaffeRuntimeError(f"pycaffe {PYCAFFE_VERSION} is not available: {_BUILD_HINT}")
    return set(_layer_types(str(pycaffe)))

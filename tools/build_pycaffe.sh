#!/usr/bin/env bash
# Build real Caffe's Python bindings (pycaffe) once, and cache them.
#
# Real Caffe is the ground truth our tests compare against.  We build it from
# the PyPI sdist brocolli-caffe==9.0.2 (BVLC master plus SSD and other fork
# layers), CPU only.  Its setup.py insists on conda and Python <= 3.9, so we
# skip it and drive its CMake directly against the Python we were given.
#
# Usage:
#   tools/build_pycaffe.sh [PYTHON]        (default PYTHON: .venv/bin/python)
#
# The last line on stdout is the directory to put on PYTHONPATH so that
# `import caffe` works; everything else goes to stderr.  The build takes about
# 8 minutes on 2 cores, so the result lives outside the clone, in
#   ${KERAFFE_CACHE:-$HOME/.cache/keraffe}/pycaffe-9.0.2/
# and a run that finds a finished cache returns at once, with no network.
#
# Cache robustness: we build in a temporary directory next to the cache and
# rename it into place only after the build and its smoke test passed, with a
# stamp file written last.  A killed build therefore leaves only a temp dir
# (removed by the next run), never a half-built cache that looks finished.
# A lock serialises concurrent runs, so two test sessions do not both build.
set -euo pipefail

VERSION=9.0.2
SDIST_SHA256=c6410cc60bdd6db685d441b66be7df05410f8850ac88d6b75d48ef9b2315c08a
CACHE_ROOT=${KERAFFE_CACHE:-$HOME/.cache/keraffe}
DEST=$CACHE_ROOT/pycaffe-$VERSION
STAMP=$DEST/BUILD_OK
PYPATH_DIR=$DEST/python

# Keep stdout for the one result line; all chatter goes to stderr.
exec 3>&1 1>&2

log() { printf '[build_pycaffe] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${1:-$repo_root/.venv/bin/python}
[ -x "$PY" ] || PY=$(command -v "$PY" 2>/dev/null) || die "no Python interpreter '${1:-.venv/bin/python}'"

# The cached _caffe.so is tied to one CPython ABI; remember which.
py_tag=$("$PY" -c 'import sys; print("cpython-%d%d" % sys.version_info[:2])')

# Print the cached dir and exit if a finished build is there; else return.
check_cache() {
    [ -f "$STAMP" ] || return 0
    local built_for
    built_for=$(sed -n 's/^python=//p' "$STAMP")
    if [ "$built_for" != "$py_tag" ]; then
        die "cache $DEST was built for $built_for, not $py_tag ($PY); remove it or set KERAFFE_CACHE"
    fi
    echo "$PYPATH_DIR" >&3
    exit 0
}

# Fast path: a finished cache needs nothing else (no apt, no network).
check_cache

mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/pycaffe-$VERSION.lock"
if ! flock -n 9; then
    log "another build holds $CACHE_ROOT/pycaffe-$VERSION.lock; waiting for it"
    flock 9
fi
check_cache   # the run we waited for may have finished the job

# ---- system packages ------------------------------------------------------
APT_PKGS=(libboost-system-dev libboost-thread-dev libboost-filesystem-dev
          libboost-python-dev libboost-regex-dev libprotobuf-dev protobuf-compiler
          libgoogle-glog-dev libgflags-dev libhdf5-dev libopenblas-dev
          libgtest-dev cmake g++ make)
missing=()
for p in "${APT_PKGS[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    SUDO=()
    [ "$(id -u)" -eq 0 ] || SUDO=(sudo)
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# ---- Python side ------------------------------------------------------------
read -r py_prefix py_ver numpy_inc < <("$PY" -c '
import sys, numpy
print(sys.base_prefix, "python%d.%d" % sys.version_info[:2], numpy.get_include())')
[ -n "${numpy_inc:-}" ] || die "$PY could not report its prefix and numpy include dir (is numpy installed?)"
py_nodot=${py_ver#python}; py_nodot=${py_nodot/./}
[ -f "$py_prefix/include/$py_ver/Python.h" ] \
    || die "no Python.h under $py_prefix/include/$py_ver (install the Python dev headers)"
# caffe/__init__.py imports six and, through caffe/io.py, scikit-image.
"$PY" -c 'import six, skimage' 2>/dev/null \
    || die "$PY lacks six or scikit-image, which 'import caffe' needs (pip install six scikit-image)"

multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
libdir=/usr/lib/$multiarch
boost_py=$libdir/libboost_python$py_nodot.so
[ -e "$boost_py" ] || die "$boost_py not found: Debian's libboost-python-dev has no build for $py_ver"

# ---- build ------------------------------------------------------------------
rm -rf "$CACHE_ROOT"/.pycaffe-"$VERSION".tmp.*   # left by killed runs (we hold the lock)
WORK=$(mktemp -d "$CACHE_ROOT/.pycaffe-$VERSION.tmp.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
start=$(date +%s)

log "downloading brocolli-caffe==$VERSION sdist"
"$PY" -m pip download -q --no-deps --no-binary :all: -d "$WORK/dl" "brocolli-caffe==$VERSION"
sdist=$WORK/dl/brocolli-caffe-$VERSION.tar.gz
echo "$SDIST_SHA256  $sdist" | sha256sum -c --quiet - || die "sdist checksum mismatch"
tar -xzf "$sdist" -C "$WORK"
SRC=$WORK/brocolli-caffe-$VERSION

# The sdist ships a caffe_pb2.py made by an old protoc and cpython-38 bytecode;
# drop both so the package holds only what this build generates.
rm -rf "$SRC/python/caffe/__pycache__" "$SRC/python/caffe/proto/caffe_pb2.py"

# python/CMakeLists.txt links -lboost_python; Debian only names it per Python
# version (libboost_python311.so).  A private symlink avoids touching /usr.
mkdir -p "$WORK/lib"
ln -s "$boost_py" "$WORK/lib/libboost_python.so"

hdf5_inc=/usr/include/hdf5/serial
hdf5_lib=$libdir/hdf5/serial

# CMakeLists.txt finds Python through ANACONDA_HOME/include/PYTHON_VERSION; it
# also guesses numpy's include dir at the pre-2.0 path (numpy/core/include),
# hence the explicit -I.  Debian keeps HDF5 under hdf5/serial.
log "configuring (python: $py_prefix $py_ver, numpy: $numpy_inc)"
cmake -S "$SRC" -B "$WORK/build" \
    -DCMAKE_BUILD_TYPE=Release \
    -DANACONDA_HOME="$py_prefix" \
    -DPYTHON_VERSION="$py_ver" \
    -DCMAKE_CXX_FLAGS="-I$numpy_inc -I$hdf5_inc" \
    -DCMAKE_SHARED_LINKER_FLAGS="-L$WORK/lib -L$hdf5_lib" \
    -DCMAKE_EXE_LINKER_FLAGS="-L$WORK/lib -L$hdf5_lib" \
    -DCMAKE_INSTALL_PREFIX="$WORK/install"

log "building with $(nproc) jobs (about 8 minutes on 2 cores)"
cmake --build "$WORK/build" -j"$(nproc)"
cmake --install "$WORK/build" >/dev/null

# Everything Caffe has (libcaffe included) is linked into _caffe.so itself; the
# rest are system libraries, so no rpath or LD_LIBRARY_PATH is needed.
out=$WORK/out
mkdir -p "$out"
cp -r "$WORK/install/python" "$out/python"
so=$(ls "$out"/python/caffe/_caffe*.so)
deps=$(ldd "$so")
if grep -q 'not found' <<<"$deps"; then
    echo "$deps" >&2
    die "_caffe.so has unresolved libraries"
fi

# ---- verify -------------------------------------------------------------------
log "verifying: import caffe and run a tiny net"
PYTHONPATH="$out/python" GLOG_minloglevel=2 "$PY" - <<'EOF'
import os, tempfile
import numpy as np
import caffe
from caffe.proto import caffe_pb2
from google.protobuf import text_format

caffe.set_mode_cpu()
proto = """
name: "smoke"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 2 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 2
          weight_filler { type: "constant" value: 1 }
          bias_filler { type: "constant" value: 0.5 } } }
layer { name: "relu" type: "ReLU" bottom: "ip" top: "out" }
"""
text_format.Parse(proto, caffe_pb2.NetParameter())  # protobuf runtime accepts the gencode
with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as f:
    f.write(proto)
try:
    net = caffe.Net(f.name, caffe.TEST)
finally:
    os.unlink(f.name)
x = np.array([[1, 2, 3], [-4, -5, -6]], np.float32)
net.blobs["data"].data[...] = x
out = net.forward()["out"]
expect = np.maximum(x.sum(1, keepdims=True) + 0.5, 0).repeat(2, 1)
assert np.array_equal(out, expect), (out, expect)
print("pycaffe OK:", len(caffe.layer_type_list()), "layer types")
EOF

# Stamp last, then rename into place: only a finished, verified build is found.
{
    echo "version=$VERSION"
    echo "python=$py_tag"
    echo "python_exe=$PY"
    echo "numpy_include=$numpy_inc"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "build_seconds=$(( $(date +%s) - start ))"
} > "$out/BUILD_OK"
rm -rf "$DEST"      # a stamp-less leftover from an older layout, if any
mv "$out" "$DEST"
log "built in $(( $(date +%s) - start ))s; cached at $DEST"
echo "$PYPATH_DIR" >&3

#!/usr/bin/env bash
# Regenerate src/keraffe/caffe/proto/caffe_pb2.py from caffe.proto.
#
# The generated module is committed so users need no protoc. It is made with
# grpcio-tools' bundled protoc, run from src/ so the schema registers under
# the unique name "keraffe/caffe/proto/caffe.proto". The runtime-version guard
# that new protoc releases embed is removed: the descriptor-builder code it
# protects works on every protobuf >= 4.21, the floor pyproject declares.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$here/.venv/bin/python}
out=$here/src/keraffe/caffe/proto/caffe_pb2.py
cd "$here/src"
"$py" -m grpc_tools.protoc -I. --python_out=. keraffe/caffe/proto/caffe.proto
"$py" - "$out" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
text = text.replace("from google.protobuf import runtime_version as _runtime_version\n", "")
text = re.sub(r"_runtime_version\.ValidateProtobufRuntimeVersion\(.*?\n\)\n", "", text, flags=re.S)
open(path, "w").write(text)
PY
echo "wrote $out"

#!/usr/bin/env bash
# Generates the Python gRPC stubs of the shop API (proto/shop/v1) with grpcio-tools.
#
#   pip install -r requirements.txt
#   ./generate.sh [OUT_DIR]          # default: gen/ next to this script
#
# OUT_DIR then holds the package shop.v1 (*_pb2.py, *_pb2.pyi, *_pb2_grpc.py); shop_client.py
# imports it from gen/ or from $SHOP_GRPC_STUBS. PYTHON picks the interpreter (default python3),
# SHOP_PROTO_DIR another proto folder (default: the repository's proto/).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
proto=$(cd "${SHOP_PROTO_DIR:-$here/../../../proto}" && pwd)
out=${1:-$here/gen}
mkdir -p "$out"
out=$(cd "$out" && pwd)
# Absolute, as the generator runs inside the proto folder.
python=$(command -v "${PYTHON:-python3}") || { echo "generate.sh: no ${PYTHON:-python3}" >&2; exit 1; }
[[ $python == /* ]] || python=$PWD/$python

if ! "$python" -c 'import grpc_tools.protoc' 2>/dev/null; then
  echo "generate.sh: $python has no grpcio-tools; pip install -r $here/requirements.txt" >&2
  exit 1
fi
cd "$proto"
# `python -m grpc_tools.protoc` adds the well-known types (google/protobuf/*.proto) itself.
"$python" -m grpc_tools.protoc -I . \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  shop/v1/*.proto
echo "generated the shop.v1 stubs into $out" >&2

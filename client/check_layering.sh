#!/bin/bash
# Fails when client code outside client/transport/ includes gRPC, the
# generated Protobuf code or the converters of the gRPC edge, or names a
# ckpt.v1 type: the transport is the client's one gRPC edge.
# Usage: check_layering.sh CLIENT_SOURCE_DIR
set -u
dir=${1:?usage: check_layering.sh CLIENT_SOURCE_DIR}
pattern='#include *[<"](grpcpp/|grpc/|ckpt/v1/|google/protobuf/|common/grpc_status\.h|common/wire_format\.h)|\bv1::'
found=$(grep -rnE --include='*.h' --include='*.cc' "$pattern" "$dir" |
        grep -v "^$dir/transport/")
if [[ -n "$found" ]]; then
  echo "gRPC or wire code outside client/transport/:"
  echo "$found"
  exit 1
fi
echo "client layering OK"

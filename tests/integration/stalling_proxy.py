"""A ckpt-server that stalls one kind of stream: forwards every call to a
real server (raw bytes, the authorization metadata and errors unchanged),
but stalls the first call of the chosen kind, while gRPC keeps answering
the client's keepalive pings: the hang a stuck or hostile server causes,
which HTTP/2 keepalive does not end. Later calls of that kind are forwarded
(the server recovered: a rerun resumes).

Modes (the optional third argument):
  read      (default) accepts a ReadChunks call and never sends a chunk;
            PutChunks is UNIMPLEMENTED (a copy's source is only read).
            Used by copy_cli_test.cc.
  upload    accepts a PutChunks call and never reads its messages: the
            client's writes block on HTTP/2 flow control.
  finish    reads a PutChunks call's every message, then never answers.
  verify    accepts a VerifyCheckpoints call and never sends a message.
The last three are used by stalled_server_test.cc.

Usage: stalling_proxy.py UPSTREAM_ADDRESS PORT_FILE [MODE]
Writes the port it listens on (127.0.0.1) into PORT_FILE once serving."""

import os
import sys
import threading
from concurrent import futures

import grpc

_STALLED_METHOD = {"read": "/ReadChunks", "upload": "/PutChunks",
                   "finish": "/PutChunks", "verify": "/VerifyCheckpoints"}


class _Proxy(grpc.GenericRpcHandler):
    def __init__(self, upstream, mode):
        self._upstream = upstream
        self._mode = mode
        self._lock = threading.Lock()
        self._stalled_once = False
        self._never = threading.Event()  # never set

    def _stall_now(self):
        with self._lock:
            stall = not self._stalled_once
            self._stalled_once = True
        return stall

    def _hang(self, context):
        while context.is_active():
            self._never.wait(0.1)

    def service(self, handler_call_details):
        method = handler_call_details.method
        stalled = method.endswith(_STALLED_METHOD[self._mode])
        if method.endswith("/PutChunks"):
            if self._mode == "read":
                return None  # UNIMPLEMENTED: a copy's source is only read
            forward = self._upstream.stream_unary(method)

            def put(requests, context):
                if stalled and self._stall_now():
                    if self._mode == "finish":
                        for _ in requests:
                            pass
                    self._hang(context)  # "upload": never reads a message
                    return None
                try:
                    return forward(requests, metadata=_credentials(context))
                except grpc.RpcError as error:
                    context.abort(error.code(), error.details())
            return grpc.stream_unary_rpc_method_handler(put)
        if method.endswith("/ReadChunks") or \
                method.endswith("/VerifyCheckpoints"):
            forward = self._upstream.unary_stream(method)

            def read(request, context):
                if stalled and self._stall_now():
                    self._hang(context)
                    return
                try:
                    yield from forward(request, metadata=_credentials(context))
                except grpc.RpcError as error:
                    context.abort(error.code(), error.details())
            return grpc.unary_stream_rpc_method_handler(read)
        forward = self._upstream.unary_unary(method)

        def call(request, context):
            try:
                return forward(request, timeout=60,
                               metadata=_credentials(context))
            except grpc.RpcError as error:
                context.abort(error.code(), error.details())
        return grpc.unary_unary_rpc_method_handler(call)


def _credentials(context):
    return [(key, value) for key, value in context.invocation_metadata()
            if key == "authorization"]


def main():
    upstream_address, port_file = sys.argv[1], sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else "read"
    if mode not in _STALLED_METHOD:
        sys.exit(f"unknown mode {mode!r}; one of {sorted(_STALLED_METHOD)}")
    upstream = grpc.insecure_channel(
        upstream_address,
        options=[("grpc.max_receive_message_length", 64 << 20),
                 ("grpc.max_send_message_length", 64 << 20)])
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16),
        options=[("grpc.max_receive_message_length", 64 << 20),
                 ("grpc.max_send_message_length", 64 << 20)])
    server.add_generic_rpc_handlers((_Proxy(upstream, mode),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with open(port_file + ".tmp", "w") as out:
        out.write(str(port))
    os.rename(port_file + ".tmp", port_file)
    server.wait_for_termination()


if __name__ == "__main__":
    main()

"""A ckpt-server that stalls a chunk read: forwards every call to a real
server (raw bytes, the authorization metadata and errors unchanged), but
accepts the first ReadChunks call without ever sending a chunk, while gRPC
keeps answering the client's keepalive pings: the hang a stuck or hostile
server causes, which HTTP/2 keepalive does not end. Later ReadChunks calls
are forwarded (the server recovered: a rerun resumes). Used by
copy_cli_test.cc.

Usage: stalling_proxy.py UPSTREAM_ADDRESS PORT_FILE
Writes the port it listens on (127.0.0.1) into PORT_FILE once serving."""

import os
import sys
import threading
from concurrent import futures

import grpc



class _Proxy(grpc.GenericRpcHandler):
    def __init__(self, upstream):
        self._upstream = upstream
        self._lock = threading.Lock()
        self._stalled_once = False
        self._never = threading.Event()  # never set

    def service(self, handler_call_details):
        method = handler_call_details.method
        if method.endswith("/PutChunks"):
            return None  # UNIMPLEMENTED: a copy's source is only read
        if method.endswith("/ReadChunks"):
            forward = self._upstream.unary_stream(method)

            def read(request, context):
                with self._lock:
                    stall = not self._stalled_once
                    self._stalled_once = True
                if stall:
                    while context.is_active():
                        self._never.wait(0.1)
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
    upstream = grpc.insecure_channel(
        upstream_address,
        options=[("grpc.max_receive_message_length", 64 << 20)])
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16),
        options=[("grpc.max_receive_message_length", 64 << 20),
                 ("grpc.max_send_message_length", 64 << 20)])
    server.add_generic_rpc_handlers((_Proxy(upstream),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with open(port_file + ".tmp", "w") as out:
        out.write(str(port))
    os.rename(port_file + ".tmp", port_file)
    server.wait_for_termination()


if __name__ == "__main__":
    main()

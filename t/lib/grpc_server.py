#!/usr/bin/env python3
"""gRPC test server of the t/ suites (grpcio, no generated code: raw bytes in and out).

    python3 t/lib/grpc_server.py --port P [--tls-cert F --tls-key K] [--pidfile F]

Binds 127.0.0.1:P only (P 0: a free port, printed as `ready P`); prints `ready` on stdout
when serving; exits on SIGTERM/SIGINT, and when its parent process goes away.
Service test.Echo:
  Unary    (unary)  replies b"echo:" + request; initial metadata x-echo (from the request's
                    x-echo) and x-seen-bin-bin (the raw bytes of the request's x-data-bin);
                    trailing metadata x-trailer: done
  Fail     (unary)  aborts with status x-code (default 7) and details x-details (default denied)
  Slow     (unary)  sleeps x-sleep-ms (default 2000), replies b"slow"
  Big      (unary)  request: decimal N; replies N bytes of b"0123456789abcdef" repeated
  Count    (server streaming) request: decimal N; yields msg-0 .. msg-{N-1}, x-gap-ms apart
                    (default 0); initial metadata x-stream: yes, trailing metadata x-count: N
  Collect  (client streaming) replies with the received messages joined by b"+"
  Headers  (unary)  replies with the request metadata as sorted `key=value` lines (-bin
                    values in hex)
"""
import argparse
import os
import signal
import sys
import threading
import time
from concurrent import futures

import grpc


def md(context):
    return {m.key: m.value for m in context.invocation_metadata()}


def md_int(context, key, default):
    try:
        return int(md(context).get(key, default))
    except (TypeError, ValueError):
        return default


def unary(request, context):
    m = md(context)
    initial = []
    if "x-echo" in m:
        initial.append(("x-echo", m["x-echo"]))
    if "x-data-bin" in m:
        initial.append(("x-seen-bin-bin", bytes(m["x-data-bin"])))
    context.send_initial_metadata(initial)
    context.set_trailing_metadata([("x-trailer", "done")])
    return b"echo:" + request


def fail(request, context):
    n = md_int(context, "x-code", 7)
    code = next((c for c in grpc.StatusCode if c.value[0] == n), grpc.StatusCode.UNKNOWN)
    context.abort(code, md(context).get("x-details", "denied"))


def slow(request, context):
    time.sleep(md_int(context, "x-sleep-ms", 2000) / 1000)
    return b"slow"


def big(request, context):
    n = int(request or b"0")
    pattern = b"0123456789abcdef"
    return (pattern * (n // len(pattern) + 1))[:n]


def count(request, context):
    n = int(request or b"0")
    gap = md_int(context, "x-gap-ms", 0) / 1000
    context.send_initial_metadata([("x-stream", "yes")])
    context.set_trailing_metadata([("x-count", str(n))])
    for i in range(n):
        if i and gap:
            time.sleep(gap)
        yield b"msg-%d" % i


def collect(request_iterator, context):
    return b"+".join(request_iterator)


def headers(request, context):
    lines = []
    for m in context.invocation_metadata():
        v = m.value.hex() if isinstance(m.value, bytes) else m.value
        lines.append("%s=%s" % (m.key, v))
    return "\n".join(sorted(lines)).encode()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--pidfile")
    a = p.parse_args()

    uu = grpc.unary_unary_rpc_method_handler
    handler = grpc.method_handlers_generic_handler("test.Echo", {
        "Unary": uu(unary),
        "Fail": uu(fail),
        "Slow": uu(slow),
        "Big": uu(big),
        "Count": grpc.unary_stream_rpc_method_handler(count),
        "Collect": grpc.stream_unary_rpc_method_handler(collect),
        "Headers": uu(headers),
    })
    # No SO_REUSEPORT: a port someone else holds must fail, not be shared.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), handlers=[handler],
                         options=[("grpc.so_reuseport", 0)])
    addr = "127.0.0.1:%d" % a.port
    try:
        if a.tls_cert or a.tls_key:
            with open(a.tls_key, "rb") as k, open(a.tls_cert, "rb") as c:
                creds = grpc.ssl_server_credentials([(k.read(), c.read())])
            port = server.add_secure_port(addr, creds)
        else:
            port = server.add_insecure_port(addr)
    except (RuntimeError, OSError) as e:
        sys.exit("grpc_server: cannot listen on %s: %s" % (addr, e))
    if not port:
        sys.exit("grpc_server: cannot listen on %s" % addr)
    server.start()
    if a.pidfile:
        with open(a.pidfile, "w") as f:
            f.write("%d\n" % os.getpid())

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready %d" % port if a.port == 0 else "ready", flush=True)
    parent = os.getppid()
    # Polling (not a blocking wait) keeps the signal handlers running; a changed parent means
    # the test process is gone without killing us.
    while not stop.wait(0.5):
        if os.getppid() != parent:
            break
    server.stop(0.5).wait()
    if a.pidfile:
        try:
            os.unlink(a.pidfile)
        except OSError:
            pass


if __name__ == "__main__":
    main()

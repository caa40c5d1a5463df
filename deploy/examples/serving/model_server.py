#!/usr/bin/env python3
"""Example model server for a Cairn serving replica (Python 3 standard library only).

Configuration comes from the environment the node agent gives a serving replica:

  CAIRN_PORT           port to listen on (required, 1-65535)
  CAIRN_MODEL_PATH     local file holding the model (required)
  CAIRN_MODEL_NAME     model name reported back (may be empty)
  CAIRN_MODEL_VERSION  model version reported back (may be empty)
  CAIRN_LISTEN_HOST    address to bind (default 0.0.0.0)
  LOAD_SECONDS         extra seconds before the model counts as loaded (default 0),
                       to simulate a large model
  PREDICT_SECONDS      extra seconds each prediction takes (default 0), to simulate
                       inference work
  VERBOSE              "1" logs one line per request to stderr

Missing or invalid configuration exits with code 2.

The model file is JSON: {"kind": "linear", "weights": [w1, ...], "bias": b}.

Endpoints:
  POST /predict   {"inputs": [[x1, ...], ...]} -> {"outputs": [...], "model": .., "version": ..}
  GET  /healthz   200 {"status": "ok", ...} once loaded, 503 before
  GET  /version   {"model": .., "version": .., "path": ..}
  anything else   404 (405 for a known path with the wrong method), JSON body

SIGTERM (or SIGINT) stops accepting connections, lets requests in flight finish for
up to 10 s, then exits 0. A model file that fails to load exits 1.
"""

import json
import math
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

DRAIN_SECONDS = 10.0
MAX_BODY_BYTES = 1 << 20


def fail_config(message):
    print(f"model_server: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def read_config():
    env = os.environ
    port_text = env.get("CAIRN_PORT", "").strip()
    if not port_text:
        fail_config("CAIRN_PORT is required")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        fail_config(f"CAIRN_PORT must be a port number 1-65535, got {port_text!r}")

    path = env.get("CAIRN_MODEL_PATH", "").strip()
    if not path:
        fail_config("CAIRN_MODEL_PATH is required")
    if not os.path.isfile(path):
        fail_config(f"CAIRN_MODEL_PATH {path!r} is not a readable file")

    def seconds(name):
        text = env.get(name, "").strip() or "0"
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not (math.isfinite(value) and value >= 0):
            fail_config(f"{name} must be a number >= 0, got {text!r}")
        return value

    load_seconds = seconds("LOAD_SECONDS")
    predict_seconds = seconds("PREDICT_SECONDS")

    return {
        "port": port,
        "host": env.get("CAIRN_LISTEN_HOST", "").strip() or "0.0.0.0",
        "path": path,
        "name": env.get("CAIRN_MODEL_NAME", ""),
        "version": env.get("CAIRN_MODEL_VERSION", ""),
        "load_seconds": load_seconds,
        "predict_seconds": predict_seconds,
        "verbose": env.get("VERBOSE", "") == "1",
    }


def is_number(v):
    # bool is an int subclass; true/false are not numbers here.
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def reject_constant(name):
    # json accepts NaN/Infinity by default; they are not valid JSON.
    raise ValueError(f"invalid number {name}")


class LinearModel:
    def __init__(self, doc):
        if not isinstance(doc, dict) or doc.get("kind") != "linear":
            raise ValueError('model must be an object with "kind": "linear"')
        weights, bias = doc.get("weights"), doc.get("bias", 0)
        if not isinstance(weights, list) or not weights or not all(map(is_number, weights)):
            raise ValueError('"weights" must be a non-empty list of numbers')
        if not is_number(bias):
            raise ValueError('"bias" must be a number')
        self.weights = [float(w) for w in weights]
        self.bias = float(bias)

    @property
    def width(self):
        return len(self.weights)

    def predict(self, row):
        return math.fsum(w * x for w, x in zip(self.weights, row)) + self.bias


class BadRequest(Exception):
    pass


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True  # a stuck connection must not keep the process alive

    def __init__(self, config):
        if ":" in config["host"]:
            self.address_family = socket.AF_INET6
        super().__init__((config["host"], config["port"]), Handler)
        self.config = config
        self.model = None
        self.load_error = None
        self.loaded_in = None
        self.draining = False
        self.exit_code = 0
        self.inflight = 0
        self.idle = threading.Condition()

    def load_model(self):
        start = time.monotonic()
        try:
            time.sleep(self.config["load_seconds"])
            with open(self.config["path"], encoding="utf-8") as f:
                model = LinearModel(json.load(f, parse_constant=reject_constant))
        except (OSError, ValueError) as e:
            self.load_error = f"cannot load model {self.config['path']!r}: {e}"
            print(f"model_server: {self.load_error}", file=sys.stderr, flush=True)
            # A replica that can never become healthy should fail visibly so the
            # agent reports it, rather than sit at 503 forever.
            self.exit_code = 1
            self.draining = True
            self.shutdown()
            return
        self.loaded_in = time.monotonic() - start
        self.model = model  # published last: /healthz turns 200 from here on
        c = self.config
        print(
            f"model loaded name={c['name']!r} version={c['version']!r} path={c['path']!r} "
            f"width={model.width} load_time={self.loaded_in:.3f}s",
            flush=True,
        )

    def wait_idle(self, timeout):
        with self.idle:
            return self.idle.wait_for(lambda: self.inflight == 0, timeout)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    server_version = "cairn-example-model-server/1"
    timeout = 60  # drop idle keep-alive connections eventually
    # One write per response (headers and body together, flushed after each request),
    # and no Nagle: a response split in two small segments would wait for the client's
    # delayed ACK, about 40 ms, on every keep-alive request.
    wbufsize = -1
    disable_nagle_algorithm = True

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    do_PUT = do_DELETE = do_PATCH = do_POST

    ROUTES = {
        "/predict": {"POST": "predict"},
        "/healthz": {"GET": "healthz"},
        "/version": {"GET": "version"},
    }

    def dispatch(self):
        server = self.server
        with server.idle:
            server.inflight += 1
        try:
            self.body = self.read_body()
            if self.body is None:
                return
            path = urlsplit(self.path).path
            methods = self.ROUTES.get(path)
            if methods is None:
                self.send_json(404, {"error": f"no such endpoint: {self.command} {path}"})
            elif self.command not in methods:
                allow = ", ".join(sorted(methods))
                self.send_json(405, {"error": f"{path} allows {allow}"}, {"Allow": allow})
            else:
                getattr(self, "handle_" + methods[self.command])()
        finally:
            # The response leaves before the request stops counting: a draining server
            # exits once none is in flight.
            try:
                self.wfile.flush()
            except OSError:
                pass
            with server.idle:
                server.inflight -= 1
                server.idle.notify_all()

    def read_body(self):
        """The request body, or None after answering an error (which closes the
        connection, as any unread body would garble the next request)."""
        if "Transfer-Encoding" in self.headers:
            self.close_connection = True
            self.send_json(411, {"error": "chunked bodies are not supported; send Content-Length"})
            return None
        text = self.headers.get("Content-Length", "0")
        try:
            length = int(text)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            self.send_json(400, {"error": f"invalid Content-Length {text!r}"})
            return None
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self.send_json(413, {"error": f"body over {MAX_BODY_BYTES} bytes"})
            return None
        return self.rfile.read(length)

    def handle_healthz(self):
        server, c = self.server, self.config
        if server.model is not None:
            self.send_json(200, {
                "status": "ok", "model": c["name"], "version": c["version"],
                "load_time_seconds": round(server.loaded_in, 3),
            })
        elif server.load_error:
            self.send_json(503, {"status": "error", "error": server.load_error})
        else:
            self.send_json(503, {"status": "loading", "model": c["name"], "version": c["version"]})

    def handle_version(self):
        c = self.config
        self.send_json(200, {"model": c["name"], "version": c["version"], "path": c["path"]})

    def handle_predict(self):
        model = self.server.model
        if model is None:
            self.send_json(503, {"error": "model not loaded yet"})
            return
        try:
            outputs = self.predict(model)
        except BadRequest as e:
            self.send_json(400, {"error": str(e)})
            return
        c = self.config
        if c["predict_seconds"]:
            time.sleep(c["predict_seconds"])
        self.send_json(200, {"outputs": outputs, "model": c["name"], "version": c["version"]})

    def predict(self, model):
        try:
            doc = json.loads(self.body, parse_constant=reject_constant)
        except ValueError as e:  # includes bad UTF-8 and NaN/Infinity
            raise BadRequest(f"body is not valid JSON: {e}")
        inputs = doc.get("inputs") if isinstance(doc, dict) else None
        if not isinstance(inputs, list):
            raise BadRequest('body must be a JSON object {"inputs": [[x1, ...], ...]}')
        outputs = []
        for i, row in enumerate(inputs):
            if not isinstance(row, list) or not all(map(is_number, row)):
                raise BadRequest(f"inputs[{i}] must be a list of numbers")
            if len(row) != model.width:
                raise BadRequest(
                    f"inputs[{i}] has width {len(row)}; expected width {model.width}")
            y = model.predict(row)
            if not math.isfinite(y):
                raise BadRequest(f"inputs[{i}] gives a non-finite output")
            outputs.append(y)
        return outputs

    @property
    def config(self):
        return self.server.config

    def send_json(self, status, doc, headers=None):
        body = json.dumps(doc).encode() + b"\n"
        if self.server.draining:
            # Tell keep-alive clients to reconnect (to another replica).
            self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        if self.config["verbose"]:
            super().log_message(format, *args)


def main():
    config = read_config()
    try:
        server = ModelServer(config)
    except OSError as e:
        print(f"model_server: cannot listen on {config['host']}:{config['port']}: {e}",
              file=sys.stderr, flush=True)
        return 1

    def on_signal(signum, frame):
        server.draining = True
        # shutdown() waits for serve_forever() to return, which runs on this
        # (main) thread, so it must be called from another one.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    host, port = server.server_address[:2]
    print(f"listening on {host}:{port} model={config['name']!r} version={config['version']!r}",
          flush=True)
    threading.Thread(target=server.load_model, name="load-model", daemon=True).start()

    server.serve_forever(poll_interval=0.1)
    server.server_close()  # no new connections from here on
    print("model_server: stopping; draining requests in flight", file=sys.stderr, flush=True)
    if not server.wait_idle(DRAIN_SECONDS):
        print(f"model_server: {server.inflight} request(s) still running after "
              f"{DRAIN_SECONDS:.0f}s; exiting anyway", file=sys.stderr, flush=True)
    return server.exit_code


if __name__ == "__main__":
    sys.exit(main())

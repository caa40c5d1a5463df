#!/usr/bin/env python3
"""Tests for model_server.py: each starts the server as a subprocess on a free port.

Run: python3 deploy/examples/serving/test_model_server.py
Every wait is bounded, so a broken server fails the test instead of hanging it.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "model_server.py")
MODELS = os.path.join(HERE, "models")
HOST = "127.0.0.1"
INPUT = [[1, 2, 3], [0, 0, 0], [2, -1, 0.5]]


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CAIRN_") and k not in ("LOAD_SECONDS", "PREDICT_SECONDS", "VERBOSE")}
    env.update(extra)
    return env


class Server:
    """A model_server.py subprocess; output goes to temp files so pipes never fill."""

    def __init__(self, model_file, name, version, load_seconds="1"):
        self.port = free_port()
        self.model_path = os.path.join(MODELS, model_file)
        self.out = tempfile.TemporaryFile()
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, SERVER],
            env=clean_env(CAIRN_PORT=str(self.port), CAIRN_LISTEN_HOST=HOST,
                          CAIRN_MODEL_PATH=self.model_path, CAIRN_MODEL_NAME=name,
                          CAIRN_MODEL_VERSION=version, LOAD_SECONDS=load_seconds),
            stdout=self.out, stderr=self.err)

    def wait_listening(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited early: {self.output()}")
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise AssertionError(f"server not listening after {timeout}s: {self.output()}")

    def wait_healthy(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.request("GET", "/healthz")[0] == 200:
                return
            time.sleep(0.05)
        raise AssertionError(f"server not healthy after {timeout}s: {self.output()}")

    def request(self, method, path, body=None):
        conn = http.client.HTTPConnection(HOST, self.port, timeout=5)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            conn.request(method, path, body=body,
                         headers={"Content-Type": "application/json"} if body else {})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()

    def output(self):
        self.out.seek(0)
        self.err.seek(0)
        return f"stdout={self.out.read().decode()!r} stderr={self.err.read().decode()!r}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.out.close()
        self.err.close()


class ModelCase:
    """Shared checks, run once per model by the subclasses below."""

    MODEL_FILE = NAME = VERSION = None
    EXPECTED = None  # outputs for INPUT

    @classmethod
    def setUpClass(cls):
        cls.server = Server(cls.MODEL_FILE, cls.NAME, cls.VERSION)
        try:
            cls.server.wait_listening()
            # LOAD_SECONDS=1, so the model is still loading right after the bind.
            cls.first_health = cls.server.request("GET", "/healthz")
            cls.server.wait_healthy()
        except BaseException:
            cls.server.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def test_healthz_503_then_200(self):
        status, body = self.first_health
        self.assertEqual(status, 503)
        self.assertEqual(body["status"], "loading")
        status, body = self.server.request("GET", "/healthz")
        self.assertEqual(status, 200)
        self.assertEqual(body["status"], "ok")
        self.assertEqual((body["model"], body["version"]), (self.NAME, self.VERSION))

    def test_predict(self):
        status, body = self.server.request("POST", "/predict", {"inputs": INPUT})
        self.assertEqual(status, 200, body)
        self.assertEqual(body, {"outputs": self.EXPECTED, "model": self.NAME,
                                "version": self.VERSION})

    def test_keep_alive(self):
        conn = http.client.HTTPConnection(HOST, self.server.port, timeout=5)
        try:
            for _ in range(3):
                conn.request("POST", "/predict", body=json.dumps({"inputs": INPUT}))
                resp = conn.getresponse()
                self.assertEqual(resp.status, 200)
                self.assertEqual(json.loads(resp.read())["outputs"], self.EXPECTED)
                self.assertFalse(resp.will_close)
        finally:
            conn.close()

    def test_bad_json(self):
        for body in ("{not json", "[1, 2, 3]", '{"inputs": 5}', '{"inputs": [["a", 1, 2]]}',
                     '{"inputs": [[NaN, 1, 2]]}'):
            with self.subTest(body=body):
                status, doc = self.server.request("POST", "/predict", body)
                self.assertEqual(status, 400)
                self.assertIn("error", doc)

    def test_wrong_width(self):
        status, doc = self.server.request("POST", "/predict", {"inputs": [[1, 2]]})
        self.assertEqual(status, 400)
        self.assertIn("expected width 3", doc["error"])

    def test_version(self):
        status, doc = self.server.request("GET", "/version")
        self.assertEqual(status, 200)
        self.assertEqual(doc, {"model": self.NAME, "version": self.VERSION,
                               "path": self.server.model_path})

    def test_not_found(self):
        status, doc = self.server.request("GET", "/nope")
        self.assertEqual(status, 404)
        self.assertIn("error", doc)
        status, doc = self.server.request("GET", "/predict")
        self.assertEqual(status, 405)

    def test_stdout_lines(self):
        out = self.server.output()
        self.assertIn(f"listening on {HOST}:{self.server.port}", out)
        self.assertIn(f"model loaded name='{self.NAME}' version='{self.VERSION}'", out)


class LinearV1(ModelCase, unittest.TestCase):
    MODEL_FILE, NAME, VERSION = "linear-v1.json", "linear", "v1"
    # weights [1, 2, 3], bias 0.5
    EXPECTED = [14.5, 0.5, 2.0]


class LinearV2(ModelCase, unittest.TestCase):
    MODEL_FILE, NAME, VERSION = "linear-v2.json", "linear", "v2"
    # weights [-1, 0.5, 4], bias -2
    EXPECTED = [10.0, -2.0, -2.5]


class Lifecycle(unittest.TestCase):
    def test_sigterm_drains_in_flight_request(self):
        server = Server("linear-v1.json", "linear", "v1")
        try:
            server.wait_listening()
            server.wait_healthy()
            body = json.dumps({"inputs": [[1, 2, 3]]}).encode()
            head = (f"POST /predict HTTP/1.1\r\nHost: {HOST}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            sock = socket.create_connection((HOST, server.port), timeout=5)
            try:
                # Send the headers and half the body, so the request is in flight
                # when SIGTERM arrives.
                sock.sendall(head + body[:5])
                time.sleep(0.3)
                server.proc.send_signal(signal.SIGTERM)

                # New connections are refused while the old request is pending.
                deadline = time.monotonic() + 5
                while True:
                    try:
                        socket.create_connection((HOST, server.port), timeout=1).close()
                    except (ConnectionRefusedError, ConnectionResetError, TimeoutError):
                        # Refused; reset when it was still queued as the listener
                        # closed; or unanswered because the listener's queue is full of
                        # the earlier tries, which nobody accepts: not accepted.
                        break
                    self.assertLess(time.monotonic(), deadline, "still accepting")
                    time.sleep(0.05)
                self.assertIsNone(server.proc.poll(), "exited with a request in flight")

                sock.sendall(body[5:])
                resp = http.client.HTTPResponse(sock)
                resp.begin()
                self.assertEqual(resp.status, 200)
                self.assertEqual(json.loads(resp.read())["outputs"], [14.5])
                self.assertEqual(resp.getheader("Connection"), "close")
            finally:
                sock.close()
            self.assertEqual(server.proc.wait(timeout=10), 0, server.output())
        finally:
            server.stop()

    def run_server(self, **env):
        return subprocess.run([sys.executable, SERVER], env=clean_env(**env),
                              capture_output=True, text=True, timeout=10)

    def test_bad_config_exits_2(self):
        model = os.path.join(MODELS, "linear-v1.json")
        cases = {
            "CAIRN_PORT": dict(CAIRN_MODEL_PATH=model),
            "CAIRN_PORT must": dict(CAIRN_PORT="http", CAIRN_MODEL_PATH=model),
            "CAIRN_MODEL_PATH": dict(CAIRN_PORT=str(free_port())),
            "not a readable file": dict(CAIRN_PORT=str(free_port()),
                                        CAIRN_MODEL_PATH=os.path.join(MODELS, "missing.json")),
            "LOAD_SECONDS": dict(CAIRN_PORT=str(free_port()), CAIRN_MODEL_PATH=model,
                                 LOAD_SECONDS="soon"),
            "PREDICT_SECONDS": dict(CAIRN_PORT=str(free_port()), CAIRN_MODEL_PATH=model,
                                    PREDICT_SECONDS="-1"),
        }
        for message, env in cases.items():
            with self.subTest(message=message):
                result = self.run_server(**env)
                self.assertEqual(result.returncode, 2, result.stderr)
                self.assertIn(message, result.stderr)

    def test_bad_model_file_exits_1(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            f.write('{"kind": "tree"}')
            f.flush()
            result = self.run_server(CAIRN_PORT=str(free_port()), CAIRN_LISTEN_HOST=HOST,
                                     CAIRN_MODEL_PATH=f.name)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("cannot load model", result.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)

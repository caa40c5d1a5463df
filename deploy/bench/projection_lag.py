"""Steady-state projection lag: create registered models through Cairn's MLflow API at a
fixed rate (one keep-alive connection) and watch them appear in Kubernetes (`kubectl get
-w`); the lag of each is from Cairn's answer (the write is committed) to the watch
showing the object. Used by deploy/bench/projection.sh.

    python3 projection_lag.py MLFLOW_HOST:PORT RATE SECONDS KUBECONFIG
"""

import http.client
import json
import subprocess
import sys
import threading
import time


def main():
    mlflow, rate, seconds, kubeconfig = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    host, port = mlflow.rsplit(":", 1)
    seen = {}
    watch = subprocess.Popen(
        ["kubectl", "--kubeconfig", kubeconfig, "get", "models.cairn.dev", "-n", "cairn", "-w",
         "--no-headers", "-o", "custom-columns=NAME:.spec.name"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)

    def follow():
        for line in watch.stdout:
            name = line.strip()
            if name and name not in seen:
                seen[name] = time.monotonic()

    threading.Thread(target=follow, daemon=True).start()
    time.sleep(2)  # the watch is established
    conn = http.client.HTTPConnection(host, int(port))
    sent = {}
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < seconds:
        due = start + i / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        name = f"lag-{i}"
        conn.request("POST", "/api/2.0/mlflow/registered-models/create",
                     json.dumps({"name": name}), {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        if response.status == 200:
            sent[name] = time.monotonic()
        i += 1
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(n not in seen for n in sent):
        time.sleep(0.1)
    watch.kill()
    lags = sorted(seen[n] - sent[n] for n in sent if n in seen)
    missing = len(sent) - len(lags)
    if not lags:
        print(f"no model of {len(sent)} became visible")
        return 1
    q = lambda p: lags[min(len(lags) - 1, int(p * len(lags)))]
    print(f"steady state, {rate:.0f} models/s for {seconds:.0f} s ({len(sent)} created): lag from "
          f"Cairn's answer to the object in Kubernetes p50 {q(0.5) * 1000:.0f} ms, "
          f"p99 {q(0.99) * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms; {missing} not visible within 60 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Load generator for an MLflow model registry (REST API 2.0), using MLflow's own client.

    registry_load.py --uri http://127.0.0.1:5077 --clients 16 --duration 10s [--procs 2]

N clients (threads, spread over --procs processes) each own one registered model, created
before the timed part, and loop over one operation mix until the deadline:

    create_version        MlflowClient.create_model_version(model, source)
    transition_staging    transition_model_version_stage(..., "Staging", archive_existing_versions=True)
    transition_production transition_model_version_stage(..., "Production", archive_existing_versions=True)
    set_alias             set_registered_model_alias(model, "champion", version)
    get_version           get_model_version(model, version)
    search_versions       search_model_versions("name = '<model>'", max_results=10)

Every client call is timed on its own. MLflow's client sends one HTTP request per call,
except transition_* and set_alias, which first GET the registered model (the client's
prompt check): 8 requests per mix. No call is started after the deadline; threads are
joined. Output: JSON on stdout (totals and per call type: calls, errors, calls/s, p50 and
p99 in ms), and a one-line summary on stderr.

The client's HTTP retries are off by default (MLFLOW_HTTP_REQUEST_MAX_RETRIES=0) so that
failures are counted, not hidden; set the variable to change that.
"""

import argparse
import json
import math
import multiprocessing
import os
import resource
import sys
import threading
import time
import uuid

OPS = ("create_version", "transition_staging", "transition_production", "set_alias",
       "get_version", "search_versions")


def parse_duration(text):
    text = text.strip()
    for suffix, scale in (("ms", 0.001), ("s", 1), ("m", 60)):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * scale
    return float(text)


def setup_env(clients):
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    # One pooled keep-alive connection per client thread (the client's default pool is 10).
    os.environ.setdefault("MLFLOW_HTTP_POOL_MAXSIZE", str(max(10, clients)))
    import logging
    import warnings
    warnings.filterwarnings("ignore")  # stages are deprecated in MLflow 3; still served
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def client_for(uri):
    from mlflow import MlflowClient
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def run_client(uri, model, t0, deadline, out):
    """One client: loop over the mix until the deadline. Fills out[op] with latencies (s)."""
    client = client_for(uri)
    lat = {op: [] for op in OPS}
    errors = {op: 0 for op in OPS}
    samples = []
    last_end = t0
    n = 0

    def timed(op, fn, *args, **kwargs):
        nonlocal last_end
        if time.time() >= deadline:
            raise TimeoutError
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - a failed call is counted, not fatal
            errors[op] += 1
            if len(samples) < 3:
                samples.append(f"{op}: {type(e).__name__}: {str(e)[:200]}")
            return None
        finally:
            lat[op].append(time.perf_counter() - start)
            last_end = time.time()

    delay = t0 - time.time()
    if delay > 0:
        time.sleep(delay)
    try:
        while time.time() < deadline:
            n += 1
            mv = timed("create_version", client.create_model_version, model,
                       f"s3://bench/{model}/{n}")
            if mv is None:
                continue
            v = str(mv.version)
            timed("transition_staging", client.transition_model_version_stage, model, v,
                  "Staging", archive_existing_versions=True)
            timed("transition_production", client.transition_model_version_stage, model, v,
                  "Production", archive_existing_versions=True)
            timed("set_alias", client.set_registered_model_alias, model, "champion", v)
            timed("get_version", client.get_model_version, model, v)
            timed("search_versions", client.search_model_versions, f"name = '{model}'",
                  max_results=10)
    except TimeoutError:
        pass
    out.append({"lat": lat, "errors": errors, "samples": samples, "last_end": last_end})


def run_process(args):
    """Run some clients as threads in this process; returns their merged results."""
    uri, models, t0, deadline, clients = args
    setup_env(clients)
    out, threads = [], []
    for m in models:
        t = threading.Thread(target=run_client, args=(uri, m, t0, deadline, out), daemon=True)
        t.start()
        threads.append(t)
    time.sleep(max(0.0, t0 - time.time()))
    cpu0 = cpu_seconds()
    for t in threads:
        t.join(max(0.0, deadline - time.time()) + 60)  # a call has a 30 s HTTP timeout
    cpu = cpu_seconds() - cpu0
    lat = {op: [] for op in OPS}
    errors = {op: 0 for op in OPS}
    samples, last_end = [], t0
    for r in out:
        for op in OPS:
            lat[op].extend(r["lat"][op])
            errors[op] += r["errors"][op]
        samples.extend(r["samples"])
        last_end = max(last_end, r["last_end"])
    return {"lat": lat, "errors": errors, "samples": samples[:5], "last_end": last_end,
            "unfinished": sum(t.is_alive() for t in threads), "cpu_s": cpu}


def cpu_seconds():
    """CPU time (user + system) of this process, all its threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def machine_busy_seconds():
    """CPU time the whole machine spent busy (every core), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = math.ceil(p / 100 * len(sorted_values)) - 1  # nearest rank
    return sorted_values[max(0, min(len(sorted_values) - 1, k))]


def stats(latencies, errors, elapsed):
    values = sorted(latencies)
    p50, p99 = percentile(values, 50), percentile(values, 99)
    return {
        "calls": len(values),
        "errors": errors,
        "calls_per_s": round(len(values) / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(p50 * 1000, 2) if p50 is not None else None,
        "p99_ms": round(p99 * 1000, 2) if p99 is not None else None,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--uri", required=True, help="registry URI, e.g. http://127.0.0.1:5077")
    ap.add_argument("--clients", type=int, default=1, help="client threads in all")
    ap.add_argument("--duration", default="10s", help="timed part, e.g. 10s, 1m")
    ap.add_argument("--procs", type=int, default=1,
                    help="processes to spread the client threads over (the client is Python)")
    ap.add_argument("--prefix", default="bench", help="prefix of the models it creates")
    args = ap.parse_args()
    duration = parse_duration(args.duration)
    clients = max(1, args.clients)
    procs = max(1, min(args.procs, clients))
    setup_env(clients)

    run = uuid.uuid4().hex[:8]
    models = [f"{args.prefix}-{run}-{i}" for i in range(clients)]
    client = client_for(args.uri)
    for m in models:  # before the timed part
        client.create_registered_model(m)

    groups = [models[i::procs] for i in range(procs)]
    t0 = time.time() + (0.5 if procs > 1 else 0.05)  # let the processes start
    deadline = t0 + duration
    jobs = [(args.uri, g, t0, deadline, clients) for g in groups]
    # The machine's busy time over the timed part, sampled at its start by a thread.
    busy = []
    sampler = threading.Timer(max(0.0, t0 - time.time()),
                              lambda: busy.append(machine_busy_seconds()))
    sampler.start()
    if procs == 1:
        results = [run_process(jobs[0])]
    else:
        with multiprocessing.get_context("fork").Pool(procs) as pool:
            results = pool.map(run_process, jobs)
    sampler.join()
    busy_s = machine_busy_seconds() - busy[0]

    elapsed = max(r["last_end"] for r in results) - t0
    lat = {op: [x for r in results for x in r["lat"][op]] for op in OPS}
    errors = {op: sum(r["errors"][op] for r in results) for op in OPS}
    report = {
        "uri": args.uri,
        "clients": clients,
        "procs": procs,
        "duration_s": duration,
        "elapsed_s": round(elapsed, 3),
        **stats([x for op in OPS for x in lat[op]], sum(errors.values()), elapsed),
        "mixes": len(lat["create_version"]),
        "ops": {op: stats(lat[op], errors[op], elapsed) for op in OPS},
        "error_samples": [s for r in results for s in r["samples"]][:5],
        "unfinished_clients": sum(r["unfinished"] for r in results),
        # CPU over the timed part: the load generator's, and the rest of the machine's
        # (the system under test, and whatever else ran), per client call.
        "loadgen_cpu_s": round(sum(r["cpu_s"] for r in results), 2),
        "machine_busy_s": round(busy_s, 2),
    }
    calls = max(1, report["calls"])
    report["loadgen_cpu_ms_per_call"] = round(report["loadgen_cpu_s"] * 1000 / calls, 3)
    report["server_cpu_ms_per_call"] = round(
        max(0.0, busy_s - report["loadgen_cpu_s"]) * 1000 / calls, 3)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    print(f"{args.uri} clients={clients}: {report['calls_per_s']} calls/s, "
          f"p50 {report['p50_ms']} ms, p99 {report['p99_ms']} ms, "
          f"{report['calls']} calls, {report['errors']} errors, CPU per call: server "
          f"{report['server_cpu_ms_per_call']} ms, load generator "
          f"{report['loadgen_cpu_ms_per_call']} ms", file=sys.stderr)
    return 1 if report["calls"] == 0 else 0


if __name__ == "__main__":
    sys.exit(main())

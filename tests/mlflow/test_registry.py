#!/usr/bin/env python3
"""Conformance test for MLflow's model-registry REST API 2.0, driven by MLflow's own client.

    MLFLOW_REGISTRY_URI=http://127.0.0.1:5077 MLFLOW_TRACKING_URI=http://127.0.0.1:5077 \
        python tests/mlflow/test_registry.py [-v]

Runs every check against the registry at MLFLOW_REGISTRY_URI (MLFLOW_TRACKING_URI defaults
to the same), prints each failed check with what was expected and what came back, and
ends with the line "N passed, N failed". Exit status 0 when every check passed.

Every name it creates carries a random suffix, so it can run again against the same
server. Needs only `mlflow-skinny` (tests/mlflow/requirements.txt) and the standard
library.

    -v / VERBOSE=1   also print each raw error response (status and JSON body)
    CAIRN=1          also run the checks only Cairn passes (extensions of the API)
"""

import json
import logging
import os
import sys
import threading
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings

# A registry that answers 5xx should fail the test quickly, not after minutes of the
# client's default retries (7, backoff factor 2). The caller's settings win.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")

REGISTRY_URI = os.environ.get("MLFLOW_REGISTRY_URI", "").rstrip("/")
if not REGISTRY_URI:
    sys.exit("set MLFLOW_REGISTRY_URI=http://host:port (and MLFLOW_TRACKING_URI to the same)")
os.environ.setdefault("MLFLOW_TRACKING_URI", REGISTRY_URI)

import mlflow  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

# Stages are deprecated in MLflow 3, but the API still serves them and clients use them.
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Waiting up to 300 seconds ..."

VERBOSE = "-v" in sys.argv[1:] or os.environ.get("VERBOSE") == "1"
RUN = uuid.uuid4().hex[:10]  # this run's suffix; hex, so no LIKE wildcard (_ %) in names
API = REGISTRY_URI + "/api/2.0/mlflow/"


# ---------------------------------------------------------------------------------------
# Bookkeeping


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = []
        self.section = ""

    def ok(self, what):
        self.passed += 1

    def fail(self, what, expected, got):
        self.failed.append((self.section, what, expected, got))
        print(f"FAIL [{self.section}] {what}\n    expected: {expected!r}\n    got:      {got!r}",
              flush=True)

    def eq(self, what, got, expected):
        if got == expected:
            self.ok(what)
            return True
        self.fail(what, expected, got)
        return False

    def true(self, what, cond, detail=None):
        if cond:
            self.ok(what)
            return True
        self.fail(what, "true", detail if detail is not None else cond)
        return False

    def raises(self, what, error_code, fn, *args, **kwargs):
        """fn(*args) must raise MlflowException with this error_code (or one of a tuple)."""
        try:
            result = fn(*args, **kwargs)
        except MlflowException as e:
            if isinstance(error_code, tuple):
                return self.true(f"{what}: error_code in {error_code}", e.error_code in error_code,
                                 e.error_code)
            return self.eq(f"{what}: error_code", e.error_code, error_code)
        except Exception as e:  # noqa: BLE001 - any other failure is a failed check
            self.fail(what, f"MlflowException {error_code}", f"{type(e).__name__}: {e}")
            return False
        self.fail(what, f"MlflowException {error_code}", f"no error, returned {result!r}")
        return False

    def no_error(self, what, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001
            self.fail(what, "no error", f"{type(e).__name__}: {getattr(e, 'error_code', '')} {e}")
            return None


R = Report()


def section(fn):
    """Run one group of checks; an unexpected exception fails the group, not the run."""
    R.section = fn.__name__
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        R.fail("unexpected exception", "none",
               f"{type(e).__name__}: {getattr(e, 'error_code', '')} {e}\n"
               + traceback.format_exc(limit=4))


def name(kind):
    return f"cairn-conf-{RUN}-{kind}"


def tags_of(entity):
    """Tags of a RegisteredModel or ModelVersion as a dict (the client gives a dict)."""
    return dict(entity.tags or {})


def aliases_of_model(rm):
    """{alias: version} of a RegisteredModel (the client gives a dict alias -> version)."""
    return {k: str(v) for k, v in (rm.aliases or {}).items()}


def versions(mvs):
    return [str(mv.version) for mv in mvs]


def all_pages(fetch, max_results):
    """Follow page tokens to the end; returns (items, pages, problems)."""
    items, pages, problems, token = [], 0, [], None
    while True:
        page = fetch(max_results=max_results, page_token=token)
        pages += 1
        if len(page) > max_results:
            problems.append(f"page {pages} has {len(page)} > max_results={max_results} items")
        items.extend(page)
        token = page.token
        if not token:
            return items, pages, problems
        if pages > 1000:
            problems.append("more than 1000 pages: the page token never ends")
            return items, pages, problems


# Raw HTTP, for what the client hides (status codes, JSON types) and for extensions.
def http(method, path, params=None, body=None):
    """(status, parsed JSON or raw text) of one request to the REST API."""
    url = API + path
    if params:
        url += "?" + urllib.parse.urlencode(params, doseq=True)
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        parsed = raw.decode(errors="replace")
    if VERBOSE and status != 200:
        print(f"  {method} {path} {json.dumps(params or body)} -> {status} {raw.decode(errors='replace')}")
    return status, parsed


client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"], registry_uri=REGISTRY_URI)
mlflow.set_registry_uri(REGISTRY_URI)

# What the test expects the registry to hold at the end, compared in final_read_back:
# model name -> {"description", "tags", "aliases", "versions": {version: {...}}}
EXPECTED = {}


def expect_model(n, description="", tags=None):
    EXPECTED[n] = {"description": description, "tags": dict(tags or {}), "aliases": {},
                   "versions": {}}


def expect_version(n, mv, source, run_id="", tags=None, description=""):
    EXPECTED[n]["versions"][str(mv.version)] = {
        "source": source, "run_id": run_id, "tags": dict(tags or {}),
        "description": description, "stage": "None"}


def run_id(label):
    return f"{RUN}{label}".ljust(32, "0")[:32]


# ---------------------------------------------------------------------------------------
# Registered models


def registered_models():
    a = name("alpha")
    rm = client.create_registered_model(a, tags={"team": "vision", "tier": "gold"},
                                        description="first description")
    expect_model(a, "first description", {"team": "vision", "tier": "gold"})
    R.eq("create returns the name", rm.name, a)
    R.eq("create returns the description", rm.description, "first description")
    R.eq("create returns the tags", tags_of(rm), {"team": "vision", "tier": "gold"})

    rm = client.get_registered_model(a)
    R.eq("get: name", rm.name, a)
    R.eq("get: description", rm.description, "first description")
    R.eq("get: tags", tags_of(rm), {"team": "vision", "tier": "gold"})
    R.eq("get: no versions yet", list(rm.latest_versions or []), [])
    R.eq("get: no aliases yet", aliases_of_model(rm), {})
    R.true("get: creation_timestamp is set (ms)", (rm.creation_timestamp or 0) > 1e12,
           rm.creation_timestamp)
    R.true("get: last_updated_timestamp >= creation_timestamp",
           (rm.last_updated_timestamp or 0) >= (rm.creation_timestamp or 0),
           (rm.creation_timestamp, rm.last_updated_timestamp))

    rm = client.update_registered_model(a, description="second description")
    R.eq("update returns the new description", rm.description, "second description")
    R.eq("get after update: description", client.get_registered_model(a).description,
         "second description")
    EXPECTED[a]["description"] = "second description"

    client.set_registered_model_tag(a, "owner", "ana")
    client.set_registered_model_tag(a, "tier", "silver")  # overwrite
    client.set_registered_model_tag(a, "cairn.env", "prod")  # a key with a dot
    R.eq("set-tag: tags", tags_of(client.get_registered_model(a)),
         {"team": "vision", "tier": "silver", "owner": "ana", "cairn.env": "prod"})
    client.delete_registered_model_tag(a, "owner")
    R.no_error("delete-tag of a missing key is a no-op",
               client.delete_registered_model_tag, a, "no-such-key")
    R.eq("delete-tag: tags", tags_of(client.get_registered_model(a)),
         {"team": "vision", "tier": "silver", "cairn.env": "prod"})
    EXPECTED[a]["tags"] = {"team": "vision", "tier": "silver", "cairn.env": "prod"}

    # Delete: the model and its versions are gone.
    d = name("doomed")
    client.create_registered_model(d)
    client.create_model_version(d, "s3://bucket/doomed/1")
    client.delete_registered_model(d)
    R.raises("get after delete", "RESOURCE_DOES_NOT_EXIST", client.get_registered_model, d)
    R.raises("get version of a deleted model", "RESOURCE_DOES_NOT_EXIST",
             client.get_model_version, d, "1")
    R.eq("search versions of a deleted model",
         versions(client.search_model_versions(f"name = '{d}'")), [])
    # The name can be used again, and numbering starts afresh for the new model.
    client.create_registered_model(d)
    R.eq("re-created model starts at version 1",
         str(client.create_model_version(d, "s3://bucket/doomed/again").version), "1")
    client.delete_registered_model(d)


def rename():
    old, new = name("old"), name("renamed")
    client.create_registered_model(old, description="to be renamed")
    client.create_model_version(old, "s3://bucket/old/1", tags={"n": "1"})
    client.create_model_version(old, "s3://bucket/old/2", tags={"n": "2"})
    client.set_registered_model_alias(old, "keep", "2")
    client.rename_registered_model(old, new)  # MlflowClient returns None here
    R.raises("get of the old name", "RESOURCE_DOES_NOT_EXIST", client.get_registered_model, old)
    R.raises("get version under the old name", "RESOURCE_DOES_NOT_EXIST",
             client.get_model_version, old, "1")
    rm = client.get_registered_model(new)
    R.eq("renamed model keeps its description", rm.description, "to be renamed")
    found = client.search_model_versions(f"name = '{new}'")
    R.eq("renamed model has the versions", sorted(versions(found)), ["1", "2"])
    R.eq("versions carry the new name", sorted({mv.name for mv in found}), [new])
    mv = client.get_model_version(new, "2")
    R.eq("version under the new name: source", mv.source, "s3://bucket/old/2")
    R.eq("alias survives the rename", str(client.get_model_version_by_alias(new, "keep").version),
         "2")
    R.eq("old name has no versions", versions(client.search_model_versions(f"name = '{old}'")), [])
    R.eq("numbering continues after rename",
         str(client.create_model_version(new, "s3://bucket/old/3").version), "3")
    expect_model(new, "to be renamed")
    EXPECTED[new]["aliases"] = {"keep": "2"}
    for v in ("1", "2", "3"):
        EXPECTED[new]["versions"][v] = {"source": f"s3://bucket/old/{v}", "run_id": "",
                                        "tags": {"n": v} if v != "3" else {},
                                        "description": "", "stage": "None"}


# ---------------------------------------------------------------------------------------
# Model versions


def model_versions():
    b = name("beta")
    client.create_registered_model(b)
    expect_model(b)
    created = []
    for i, r in ((1, "a"), (2, "a"), (3, "b")):
        src, rid = f"s3://bucket/beta/{i}", run_id(r)
        mv = client.create_model_version(b, src, run_id=rid, tags={"k": f"v{i}"},
                                         description=f"version {i}")
        created.append(mv)
        expect_version(b, mv, src, rid, {"k": f"v{i}"}, f"version {i}")
    R.eq("numbering 1, 2, 3", versions(created), ["1", "2", "3"])
    mv = created[0]
    R.eq("create: name", mv.name, b)
    R.eq("create: source", mv.source, "s3://bucket/beta/1")
    R.eq("create: run_id", mv.run_id, run_id("a"))
    R.eq("create: tags", tags_of(mv), {"k": "v1"})
    R.eq("create: description", mv.description, "version 1")
    R.eq("create: status READY", mv.status, "READY")
    R.eq("create: stage None", mv.current_stage, "None")

    mv = client.get_model_version(b, "2")
    R.eq("get: version", str(mv.version), "2")
    R.eq("get: source", mv.source, "s3://bucket/beta/2")
    R.eq("get: run_id", mv.run_id, run_id("a"))
    R.eq("get: tags", tags_of(mv), {"k": "v2"})
    R.eq("get: description", mv.description, "version 2")
    R.eq("get: status", mv.status, "READY")
    R.true("get: creation_timestamp is set (ms)", (mv.creation_timestamp or 0) > 1e12,
           mv.creation_timestamp)

    # Never reuse a number: delete the highest version, the next one is still max + 1.
    client.delete_model_version(b, "3")
    del EXPECTED[b]["versions"]["3"]
    R.raises("get of a deleted version", "RESOURCE_DOES_NOT_EXIST", client.get_model_version, b, "3")
    mv = client.create_model_version(b, "s3://bucket/beta/4", run_id=run_id("c"))
    R.eq("after deleting version 3 the next is 4", str(mv.version), "4")
    expect_version(b, mv, "s3://bucket/beta/4", run_id("c"))

    mv = client.update_model_version(b, "1", description="new description")
    R.eq("update returns the description", mv.description, "new description")
    R.eq("get after update", client.get_model_version(b, "1").description, "new description")
    EXPECTED[b]["versions"]["1"]["description"] = "new description"

    client.set_model_version_tag(b, "1", "k", "v1b")  # overwrite
    client.set_model_version_tag(b, "1", "extra", "x")
    client.set_model_version_tag(b, "1", "gone", "soon")
    client.delete_model_version_tag(b, "1", "gone")
    R.no_error("delete of a missing version tag is a no-op",
               client.delete_model_version_tag, b, "1", "no-such-key")
    R.eq("version tags", tags_of(client.get_model_version(b, "1")), {"k": "v1b", "extra": "x"})
    EXPECTED[b]["versions"]["1"]["tags"] = {"k": "v1b", "extra": "x"}

    R.eq("download uri is the source", client.get_model_version_download_uri(b, "2"),
         "s3://bucket/beta/2")


def stages():
    s = name("stages")
    client.create_registered_model(s)
    expect_model(s)
    for i in range(1, 5):
        mv = client.create_model_version(s, f"s3://bucket/stages/{i}")
        expect_version(s, mv, f"s3://bucket/stages/{i}")

    def stage(v):
        return client.get_model_version(s, v).current_stage

    mv = client.transition_model_version_stage(s, "1", "Staging")
    R.eq("transition returns the new stage", mv.current_stage, "Staging")
    R.eq("v1 in Staging", stage("1"), "Staging")
    client.transition_model_version_stage(s, "1", "Production")
    R.eq("v1 in Production", stage("1"), "Production")
    R.eq("latest Staging is empty", versions(client.get_latest_versions(s, stages=["Staging"])), [])

    client.transition_model_version_stage(s, "2", "Staging")
    mv = client.transition_model_version_stage(s, "2", "Production", archive_existing_versions=True)
    R.eq("v2 to Production with archive", mv.current_stage, "Production")
    R.eq("v1 archived in the same call", stage("1"), "Archived")
    R.eq("latest Production is v2",
         versions(client.get_latest_versions(s, stages=["Production"])), ["2"])

    # Without archiving, two versions share Production; the latest of them is the highest.
    client.transition_model_version_stage(s, "3", "Production")
    R.eq("v2 still in Production", stage("2"), "Production")
    R.eq("latest Production is v3",
         versions(client.get_latest_versions(s, stages=["Production"])), ["3"])
    client.transition_model_version_stage(s, "4", "Staging")
    got = {mv.current_stage: str(mv.version)
           for mv in client.get_latest_versions(s, stages=["Staging", "Production"])}
    R.eq("latest of Staging and Production", got, {"Staging": "4", "Production": "3"})
    got = {mv.current_stage: str(mv.version) for mv in client.get_latest_versions(s)}
    R.eq("latest of every stage (no stages given)", got,
         {"Archived": "1", "Production": "3", "Staging": "4"})

    # Archive all others in Production: v2 and v3 at once.
    client.transition_model_version_stage(s, "4", "Production", archive_existing_versions=True)
    R.eq("stages after archiving two", [stage(v) for v in "1234"],
         ["Archived", "Archived", "Archived", "Production"])
    # Stage names are case-insensitive on input and canonical on output.
    mv = client.transition_model_version_stage(s, "1", "staging")
    R.eq("lower-case stage name is canonicalised", mv.current_stage, "Staging")
    client.transition_model_version_stage(s, "1", "None")
    R.eq("back to None", stage("1"), "None")

    R.raises("unknown stage", "INVALID_PARAMETER_VALUE",
             client.transition_model_version_stage, s, "1", "Bogus")
    # Refused. MLflow answers 500 INTERNAL_ERROR (which its client retries); a 400
    # INVALID_PARAMETER_VALUE is the better answer and also passes.
    R.raises("archive_existing_versions with stage Archived",
             ("INVALID_PARAMETER_VALUE", "INTERNAL_ERROR"),
             client.transition_model_version_stage, s, "1", "Archived", True)
    for v, st in zip("1234", ["None", "Archived", "Archived", "Production"]):
        EXPECTED[s]["versions"][v]["stage"] = st


def aliases():
    a = name("aliases")
    client.create_registered_model(a)
    expect_model(a)
    for i in range(1, 4):
        mv = client.create_model_version(a, f"s3://bucket/aliases/{i}")
        expect_version(a, mv, f"s3://bucket/aliases/{i}")

    client.set_registered_model_alias(a, "champion", "1")
    mv = client.get_model_version_by_alias(a, "champion")
    R.eq("get-by-alias", str(mv.version), "1")
    R.eq("the version lists its alias", list(mv.aliases), ["champion"])
    client.set_registered_model_alias(a, "champion", "2")  # re-point
    R.eq("re-pointed alias", str(client.get_model_version_by_alias(a, "champion").version), "2")
    R.eq("old version lost the alias", list(client.get_model_version(a, "1").aliases), [])
    R.eq("new version has the alias", list(client.get_model_version(a, "2").aliases), ["champion"])
    client.set_registered_model_alias(a, "challenger", "3")
    client.set_registered_model_alias(a, "shadow", "3")
    R.eq("model lists its aliases", aliases_of_model(client.get_registered_model(a)),
         {"champion": "2", "challenger": "3", "shadow": "3"})
    R.eq("a version with two aliases", sorted(client.get_model_version(a, "3").aliases),
         ["challenger", "shadow"])

    client.delete_registered_model_alias(a, "shadow")
    R.raises("get-by-alias after delete", "INVALID_PARAMETER_VALUE",
             client.get_model_version_by_alias, a, "shadow")
    R.no_error("delete of a missing alias is a no-op",
               client.delete_registered_model_alias, a, "never-set")

    # Deleting a version deletes the aliases that point at it.
    mv = client.create_model_version(a, "s3://bucket/aliases/4")
    client.set_registered_model_alias(a, "doomed", str(mv.version))
    client.delete_model_version(a, str(mv.version))
    R.raises("alias of a deleted version is gone", "INVALID_PARAMETER_VALUE",
             client.get_model_version_by_alias, a, "doomed")
    R.eq("model's aliases after the version's delete",
         aliases_of_model(client.get_registered_model(a)), {"champion": "2", "challenger": "3"})
    EXPECTED[a]["aliases"] = {"champion": "2", "challenger": "3"}

    for bad in ("latest", "LATEST", "v3", "V12"):
        R.raises(f"reserved alias {bad!r}", "INVALID_PARAMETER_VALUE",
                 client.set_registered_model_alias, a, bad, "1")
    R.raises("alias with invalid characters", "INVALID_PARAMETER_VALUE",
             client.set_registered_model_alias, a, "no spaces!", "1")
    R.raises("alias to a missing version", "RESOURCE_DOES_NOT_EXIST",
             client.set_registered_model_alias, a, "nowhere", "99")


# ---------------------------------------------------------------------------------------
# Search


def search_registered():
    prefix = name("s")
    members = [f"{prefix}-{i:02d}" for i in range(7)]
    for i, m in enumerate(members):
        t = {"grp": "even" if i % 2 == 0 else "odd"}
        if i == 3:
            t["cairn.env"] = "prod"
        client.create_registered_model(m, tags=t, description=f"member {i}")
        expect_model(m, f"member {i}", t)

    def names(rms):
        return [rm.name for rm in rms]

    def search(filter_string, **kw):
        return client.search_registered_models(filter_string=filter_string, **kw)

    R.eq("name =", names(search(f"name = '{members[3]}'")), [members[3]])
    R.eq("name LIKE, order_by name",
         names(search(f"name LIKE '{prefix}-%'", order_by=["name ASC"])), members)
    R.eq("name ILIKE (upper-case pattern)",
         sorted(names(search(f"name ILIKE '{prefix.upper()}-%'"))), members)
    R.eq("LIKE is case-sensitive", names(search(f"name LIKE '{prefix.upper()}-%'")), [])
    R.eq("name LIKE with _ wildcard",
         sorted(names(search(f"name LIKE '{prefix}-0_'"))), members)
    R.eq("name != within a prefix",
         sorted(names(search(f"name LIKE '{prefix}-%' AND name != '{members[0]}'"))), members[1:])
    R.eq("tags.grp = even",
         sorted(names(search(f"name LIKE '{prefix}-%' AND tags.grp = 'even'"))), members[0::2])
    R.eq("tags with backticks and a dot in the key",
         names(search(f"name LIKE '{prefix}-%' AND tags.`cairn.env` = 'prod'")), [members[3]])
    R.eq("tag != (models without the tag do not match)",
         sorted(names(search(f"name LIKE '{prefix}-%' AND tags.grp != 'even'"))), members[1::2])
    R.eq("order_by name DESC",
         names(search(f"name LIKE '{prefix}-%'", order_by=["name DESC"])), members[::-1])

    # Registered models order by name, "timestamp" or "last_updated_timestamp" (both mean
    # the last update; MLflow refuses "creation_timestamp"), ties broken by name ASC.
    # An update moves last_updated_timestamp (in MLflow, setting a tag does not).
    client.update_registered_model(members[2], description="member 2, touched")
    EXPECTED[members[2]]["description"] = "member 2, touched"
    full = search(f"name LIKE '{prefix}-%'")
    R.eq("search returns each model's tags", {rm.name: tags_of(rm) for rm in full},
         {m: EXPECTED[m]["tags"] for m in members})
    R.eq("search returns each model's description", {rm.name: rm.description for rm in full},
         {m: EXPECTED[m]["description"] for m in members})
    desc = names(sorted(full, key=lambda rm: (-rm.last_updated_timestamp, rm.name)))
    asc = names(sorted(full, key=lambda rm: (rm.last_updated_timestamp, rm.name)))
    R.eq("the touched model is the newest", desc[0], members[2])
    R.eq("order_by timestamp DESC (tie: name ASC)",
         names(search(f"name LIKE '{prefix}-%'", order_by=["timestamp DESC"])), desc)
    R.eq("order_by last_updated_timestamp ASC (tie: name ASC)",
         names(search(f"name LIKE '{prefix}-%'", order_by=["last_updated_timestamp ASC"])), asc)
    R.eq("order_by last_updated_timestamp (ASC by default)",
         names(search(f"name LIKE '{prefix}-%'", order_by=["last_updated_timestamp"])), asc)

    def fetch(max_results, page_token):
        return search(f"name LIKE '{prefix}-%'", max_results=max_results,
                      order_by=["name ASC"], page_token=page_token)

    items, pages, problems = all_pages(fetch, 3)
    R.eq("pagination (3 per page) collects everything in order", names(items), members)
    R.eq("pagination: 3 pages for 7 models", pages, 3)
    R.eq("pagination: page sizes", problems, [])

    def fetch_tag(max_results, page_token):
        return search(f"name LIKE '{prefix}-%' AND tags.grp = 'odd'", max_results=max_results,
                      order_by=["name DESC"], page_token=page_token)

    items, pages, problems = all_pages(fetch_tag, 1)
    R.eq("pagination with a tag filter, DESC", names(items), members[1::2][::-1])
    R.eq("pagination: page sizes (1 per page)", problems, [])

    R.raises("max_results over 1000", "INVALID_PARAMETER_VALUE", search, None, max_results=1001)
    R.raises("malformed filter", "INVALID_PARAMETER_VALUE", search, "name = = 'x'")
    R.raises("unknown filter attribute", "INVALID_PARAMETER_VALUE", search, "color = 'red'")
    R.raises("unknown order_by column", "INVALID_PARAMETER_VALUE",
             search, None, order_by=["color ASC"])


def search_versions():
    m = name("sv")
    other = name("sv-other")
    client.create_registered_model(m)
    client.create_registered_model(other)
    expect_model(m)
    expect_model(other)
    ra, rb, rc = run_id("ra"), run_id("rb"), run_id("rc")
    plan = [(ra, {"flavor": "x"}), (ra, {}), (rb, {"flavor": "y"}), (rc, {"flavor": "x"}),
            (rc, {})]
    for i, (rid, t) in enumerate(plan, start=1):
        src = f"s3://bucket/{RUN}/sv/{i}"
        mv = client.create_model_version(m, src, run_id=rid, tags=t)
        expect_version(m, mv, src, rid, t)
    mv = client.create_model_version(other, "s3://bucket/sv-other/1", run_id=rb)
    expect_version(other, mv, "s3://bucket/sv-other/1", rb)

    def key(mvs):
        return sorted((mv.name, str(mv.version)) for mv in mvs)

    def search(filter_string, **kw):
        return client.search_model_versions(filter_string, **kw)

    R.eq("name =", key(search(f"name = '{m}'")), [(m, v) for v in "12345"])
    R.eq("run_id =", key(search(f"run_id = '{ra}'")), [(m, "1"), (m, "2")])
    R.eq("run_id across models", key(search(f"run_id = '{rb}'")), [(m, "3"), (other, "1")])
    R.eq("run_id IN", key(search(f"run_id IN ('{ra}', '{rc}')")),
         [(m, v) for v in "1245"])
    R.eq("name and tags.flavor", key(search(f"name = '{m}' AND tags.flavor = 'x'")),
         [(m, "1"), (m, "4")])
    R.eq("name LIKE", key(search(f"name LIKE '{m}%'")),
         sorted([(m, v) for v in "12345"] + [(other, "1")]))
    R.eq("version_number >= 4", key(search(f"name = '{m}' AND version_number >= 4")),
         [(m, "4"), (m, "5")])
    R.eq("source_path =", key(search(f"source_path = 's3://bucket/{RUN}/sv/2'")), [(m, "2")])
    R.eq("order_by version_number ASC",
         versions(search(f"name = '{m}'", order_by=["version_number ASC"])), list("12345"))
    R.eq("order_by version_number DESC",
         versions(search(f"name = '{m}'", order_by=["version_number DESC"])), list("54321"))

    def fetch(max_results, page_token):
        return search(f"name = '{m}'", max_results=max_results,
                      order_by=["version_number ASC"], page_token=page_token)

    items, pages, problems = all_pages(fetch, 2)
    R.eq("pagination (2 per page) collects everything in order", versions(items), list("12345"))
    R.eq("pagination: 3 pages for 5 versions", pages, 3)
    R.eq("pagination: page sizes", problems, [])

    def fetch_in(max_results, page_token):
        return search(f"run_id IN ('{ra}', '{rb}')", max_results=max_results,
                      page_token=page_token)

    items, _, problems = all_pages(fetch_in, 1)
    R.eq("pagination over run_id IN (default order)", key(items),
         [(m, "1"), (m, "2"), (m, "3"), (other, "1")])
    R.eq("pagination over run_id IN: page sizes", problems, [])
    R.raises("malformed version filter", "INVALID_PARAMETER_VALUE", search, "name = ")


# ---------------------------------------------------------------------------------------
# mlflow.register_model


def register_model():
    n = name("registered")
    mv = mlflow.register_model("s3://bucket/model", n)  # the model does not exist yet
    R.eq("register_model (new model): version", str(mv.version), "1")
    R.eq("register_model (new model): status", mv.status, "READY")
    R.eq("register_model: source", mv.source, "s3://bucket/model")
    mv = mlflow.register_model("s3://bucket/model", n, tags={"via": "register_model"})
    R.eq("register_model (existing model): version", str(mv.version), "2")
    R.eq("register_model (existing model): status", mv.status, "READY")
    R.eq("register_model: tags", tags_of(client.get_model_version(n, "2")),
         {"via": "register_model"})
    expect_model(n)
    EXPECTED[n]["versions"]["1"] = {"source": "s3://bucket/model", "run_id": "", "tags": {},
                                    "description": "", "stage": "None"}
    EXPECTED[n]["versions"]["2"] = {"source": "s3://bucket/model", "run_id": "",
                                    "tags": {"via": "register_model"},
                                    "description": "", "stage": "None"}


# ---------------------------------------------------------------------------------------
# Errors, through the client (error_code) and on the wire (HTTP status, JSON body)


def errors():
    missing = name("missing")
    e = name("errors")
    client.create_registered_model(e)
    client.create_model_version(e, "s3://bucket/errors/1")
    expect_model(e)
    EXPECTED[e]["versions"]["1"] = {"source": "s3://bucket/errors/1", "run_id": "", "tags": {},
                                    "description": "", "stage": "None"}

    R.raises("get of a missing model", "RESOURCE_DOES_NOT_EXIST",
             client.get_registered_model, missing)
    R.raises("create of an existing model", "RESOURCE_ALREADY_EXISTS",
             client.create_registered_model, e)
    R.raises("create with an empty name", "INVALID_PARAMETER_VALUE",
             client.create_registered_model, "")
    R.raises("create with '/' in the name", "INVALID_PARAMETER_VALUE",
             client.create_registered_model, f"{e}/x")
    R.raises("rename onto an existing model", "RESOURCE_ALREADY_EXISTS",
             client.rename_registered_model, name("alpha"), e)
    R.raises("get-by-alias of an unknown alias", "INVALID_PARAMETER_VALUE",
             client.get_model_version_by_alias, e, "unknown")
    R.raises("get of a missing version", "RESOURCE_DOES_NOT_EXIST",
             client.get_model_version, e, "42")
    R.raises("get of a non-numeric version", "INVALID_PARAMETER_VALUE",
             client.get_model_version, e, "one")
    R.raises("create a version of a missing model", "RESOURCE_DOES_NOT_EXIST",
             client.create_model_version, missing, "s3://bucket/x")
    R.raises("set-tag on a missing model", "RESOURCE_DOES_NOT_EXIST",
             client.set_registered_model_tag, missing, "k", "v")
    R.raises("tag key over 250 characters", "INVALID_PARAMETER_VALUE",
             client.set_registered_model_tag, e, "k" * 251, "v")
    R.raises("tag value over 100,000 characters", "INVALID_PARAMETER_VALUE",
             client.set_registered_model_tag, e, "k", "v" * 100_001)
    R.raises("version tag value over 100,000 characters", "INVALID_PARAMETER_VALUE",
             client.set_model_version_tag, e, "1", "k", "v" * 100_001)
    R.no_error("set a tag value of 5,000 characters", client.set_registered_model_tag, e, "big",
               "v" * 5000)
    R.eq("tag value of 5,000 characters is kept",
         len(tags_of(client.get_registered_model(e)).get("big", "")), 5000)
    client.delete_registered_model_tag(e, "big")
    big = "v" * 5001
    if os.environ.get("CAIRN") == "1":
        # Cairn keeps MLflow's documented limit of 5,000; the server allows 100,000.
        R.raises("tag value over 5,000 characters (Cairn)", "INVALID_PARAMETER_VALUE",
                 client.set_registered_model_tag, e, "big", big)
        R.raises("version tag value over 5,000 characters (Cairn)", "INVALID_PARAMETER_VALUE",
                 client.set_model_version_tag, e, "1", "big", big)
    else:
        R.no_error("set a tag value of 5,001 characters", client.set_registered_model_tag, e,
                   "big", big)
        R.eq("tag value of 5,001 characters is kept",
             len(tags_of(client.get_registered_model(e)).get("big", "")), 5001)
        client.delete_registered_model_tag(e, "big")

    # The same on the wire: status codes and the error body's error_code.
    cases = [
        ("get missing model", "GET", "registered-models/get", {"name": missing}, None,
         404, "RESOURCE_DOES_NOT_EXIST"),
        ("create existing model", "POST", "registered-models/create", None, {"name": e},
         400, "RESOURCE_ALREADY_EXISTS"),
        ("create with empty name", "POST", "registered-models/create", None, {"name": ""},
         400, "INVALID_PARAMETER_VALUE"),
        ("create without name", "POST", "registered-models/create", None, {},
         400, "INVALID_PARAMETER_VALUE"),
        ("unknown alias", "GET", "registered-models/alias", {"name": e, "alias": "unknown"},
         None, 400, "INVALID_PARAMETER_VALUE"),
        ("reserved alias", "POST", "registered-models/alias", None,
         {"name": e, "alias": "latest", "version": "1"}, 400, "INVALID_PARAMETER_VALUE"),
        ("missing version", "GET", "model-versions/get", {"name": e, "version": "42"}, None,
         404, "RESOURCE_DOES_NOT_EXIST"),
        ("non-numeric version", "GET", "model-versions/get", {"name": e, "version": "one"},
         None, 400, "INVALID_PARAMETER_VALUE"),
        ("unknown stage", "POST", "model-versions/transition-stage", None,
         {"name": e, "version": "1", "stage": "Bogus", "archive_existing_versions": False},
         400, "INVALID_PARAMETER_VALUE"),
        ("delete missing model", "DELETE", "registered-models/delete", None, {"name": missing},
         404, "RESOURCE_DOES_NOT_EXIST"),
        ("max_results over 1000", "GET", "registered-models/search", {"max_results": 1001},
         None, 400, "INVALID_PARAMETER_VALUE"),
    ]
    for what, method, path, params, body, status, code in cases:
        got_status, got = http(method, path, params, body)
        R.eq(f"wire: {what}: HTTP status", got_status, status)
        R.eq(f"wire: {what}: error_code",
             got.get("error_code") if isinstance(got, dict) else got, code)
        R.true(f"wire: {what}: has a message",
               isinstance(got, dict) and isinstance(got.get("message"), str), got)

    got_status, got = http("GET", "no-such-endpoint", {"name": e})
    R.eq("wire: unknown endpoint: HTTP status", got_status, 404)


def wire_types():
    """JSON types the client depends on: version is a string, timestamps are numbers."""
    n = name("wire")
    status, got = http("POST", "registered-models/create", body={
        "name": n, "tags": [{"key": "a", "value": "b"}], "description": "d"})
    R.eq("wire: create model: status", status, 200)
    R.eq("wire: create model: name", got.get("registered_model", {}).get("name"), n)
    status, got = http("POST", "model-versions/create",
                       body={"name": n, "source": "s3://bucket/wire/1"})
    mv = got.get("model_version", {})
    R.eq("wire: create version: status", status, 200)
    R.eq("wire: version is a JSON string", mv.get("version"), "1")
    R.true("wire: creation_timestamp is a JSON number",
           isinstance(mv.get("creation_timestamp"), int), mv.get("creation_timestamp"))
    R.eq("wire: status is the enum name", mv.get("status"), "READY")
    R.eq("wire: current_stage", mv.get("current_stage"), "None")
    # GET with repeated keys; POST get-latest-versions with a list.
    status, got = http("GET", "registered-models/search",
                       {"filter": f"name = '{n}'", "order_by": ["name ASC", "timestamp DESC"]})
    R.eq("wire: search with repeated order_by", (status, [m.get("name") for m in
         got.get("registered_models", [])]), (200, [n]))
    R.true("wire: no next_page_token on the last page", "next_page_token" not in got
           or not got["next_page_token"], got.get("next_page_token"))
    status, got = http("POST", "registered-models/get-latest-versions",
                       body={"name": n, "stages": ["None"]})
    R.eq("wire: get-latest-versions (POST)",
         (status, [v.get("version") for v in got.get("model_versions", [])]), (200, ["1"]))
    # DELETE carries its parameters in a JSON body.
    status, _ = http("POST", "registered-models/set-tag", body={"name": n, "key": "x", "value": "y"})
    R.eq("wire: set-tag", status, 200)
    status, got = http("DELETE", "registered-models/delete-tag", body={"name": n, "key": "x"})
    R.eq("wire: delete-tag with a JSON body", (status, got), (200, {}))
    status, got = http("DELETE", "registered-models/delete", body={"name": n})
    R.eq("wire: delete with a JSON body", (status, got), (200, {}))


# ---------------------------------------------------------------------------------------
# Everything read back at the end


def final_read_back():
    for n, want in sorted(EXPECTED.items()):
        rm = client.get_registered_model(n)
        R.eq(f"{n}: description", rm.description or "", want["description"])
        R.eq(f"{n}: tags", tags_of(rm), want["tags"])
        R.eq(f"{n}: aliases", aliases_of_model(rm), want["aliases"])
        found = client.search_model_versions(f"name = '{n}'", max_results=1000)
        R.eq(f"{n}: versions", sorted(versions(found), key=int),
             sorted(want["versions"], key=int))
        latest = {}
        for v, wv in want["versions"].items():
            latest[wv["stage"]] = max(latest.get(wv["stage"], 0), int(v))
        R.eq(f"{n}: latest_versions per stage",
             {mv.current_stage: str(mv.version) for mv in rm.latest_versions or []},
             {st: str(v) for st, v in latest.items()})
        for mv in found:
            v = str(mv.version)
            wv = want["versions"].get(v)
            if wv is None:
                continue
            got = client.get_model_version(n, v)
            got_aliases = sorted(got.aliases or [])
            want_aliases = sorted(a for a, av in want["aliases"].items() if av == v)
            R.eq(f"{n} v{v}", {
                "source": got.source, "run_id": got.run_id or "", "tags": tags_of(got),
                "description": got.description or "", "stage": got.current_stage,
                "status": got.status, "aliases": got_aliases,
            }, {**wv, "status": "READY", "aliases": want_aliases})


# ---------------------------------------------------------------------------------------
# Cairn extension (only with CAIRN=1): compare-and-set stage transition.
#
# transition-stage accepts an extra field "expected_stage": the transition happens only if
# the version is in that stage when it is applied. Two identical requests raced for the
# same version: the first moves it None -> Production; the second finds it already in
# Production, not None, and must be refused with error_code INVALID_STATE and HTTP 400
# (a client error; MLflow's own table maps INVALID_STATE to 500, which its client would
# retry). MLflow ignores the field, so both succeed there.


def cairn_cas_check(base_url):
    api = base_url.rstrip("/") + "/api/2.0/mlflow/"
    n = name("cas")
    client.create_registered_model(n)
    version = str(client.create_model_version(n, "s3://bucket/cas/1").version)
    body = {"name": n, "version": version, "stage": "Production",
            "archive_existing_versions": True, "expected_stage": "None"}
    barrier = threading.Barrier(2)
    results = [None, None]

    def send(i):
        req = urllib.request.Request(api + "model-versions/transition-stage",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        barrier.wait()
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                results[i] = (resp.status, json.loads(resp.read() or b"{}"))
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                results[i] = (e.code, json.loads(raw))
            except ValueError:
                results[i] = (e.code, raw.decode(errors="replace"))
        except Exception as e:  # noqa: BLE001
            results[i] = (None, f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = sorted(r[0] or 0 for r in results)
    R.eq("cas: exactly one transition succeeds, the other gets HTTP 400", statuses, [200, 400])
    refused = [r[1] for r in results if r[0] != 200]
    if len(refused) == 1:
        body = refused[0]
        R.eq("cas: the refused one's error_code",
             body.get("error_code") if isinstance(body, dict) else body, "INVALID_STATE")
    R.eq("cas: the version ends in Production", client.get_model_version(n, version).current_stage,
         "Production")

    # Aliases: expected_version "" means "only if unset", a number "only if it points there".
    second = str(client.create_model_version(n, "s3://bucket/cas/2").version)

    def set_alias(to, expected):
        req = urllib.request.Request(
            api + "registered-models/alias",
            data=json.dumps({"name": n, "alias": "champion", "version": to,
                             "expected_version": expected}).encode(),
            method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read()).get("error_code")

    R.eq("cas: alias set only if unset", set_alias(version, ""), (200, None))
    R.eq("cas: alias set only if unset, when it is set", set_alias(second, ""),
         (400, "INVALID_STATE"))
    R.eq("cas: alias moved from the wrong version", set_alias(second, second),
         (400, "INVALID_STATE"))
    R.eq("cas: alias moved from the version it points at", set_alias(second, version),
         (200, None))
    R.eq("cas: the alias ends on the second version",
         client.get_model_version_by_alias(n, "champion").version, second)
    client.delete_registered_model(n)


# ---------------------------------------------------------------------------------------


def main():
    print(f"registry {REGISTRY_URI}, run {RUN}, mlflow client {mlflow.__version__}", flush=True)
    for fn in (registered_models, rename, model_versions, stages, aliases, search_registered,
               search_versions, register_model, errors, wire_types, final_read_back):
        section(fn)
    if os.environ.get("CAIRN") == "1":
        R.section = "cairn_cas_check"
        try:
            cairn_cas_check(REGISTRY_URI)
        except Exception as e:  # noqa: BLE001
            R.fail("unexpected exception", "none", f"{type(e).__name__}: {e}")
    print(f"{R.passed} passed, {len(R.failed)} failed")
    return 0 if not R.failed else 1


if __name__ == "__main__":
    sys.exit(main())

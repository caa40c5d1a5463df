//! The Kubernetes projection against a real kube-apiserver (`../shared/tools/
//! kube-apiserver.sh`): `cairn-server dev --kubeconfig` installs the CRDs (Established,
//! with their printer columns) and projects its nodes, a job that runs to Succeeded and a
//! model version; `cairn k8s status` shows it caught up and checkpointed, and `cairn k8s
//! resync` repairs what no watch reports; a deployment is published as a Service per
//! revision, EndpointSlices of its ready replicas and an HTTPRoute with its weights;
//! `TrainingJob`s applied in Kubernetes are taken in (accepted and run to Succeeded —
//! every example in `deploy/examples/` too — or refused with the field path in `.status`,
//! or cancelled when deleted); every custom resource and CRD deleted by hand comes back,
//! and so does everything after the api-server restarts on an empty etcd — each object at
//! its latest state, from Cairn's log.

use std::time::Duration;

use cairn_tests::{bin, cli_json, eventually, free_port, KubeApiServer, Server, ServerSpec};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
};
use serde_json::json;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples/serving");

const KINDS: [(&str, &str, bool); 7] = [
    ("TrainingJob", "trainingjobs", true),
    ("TrainingCron", "trainingcrons", true),
    ("GpuNode", "gpunodes", false),
    ("PortLease", "portleases", true),
    ("Model", "models", true),
    ("ModelVersion", "modelversions", true),
    ("ModelDeployment", "modeldeployments", true),
];

fn api(client: &kube::Client, kind: &str, plural: &str, namespaced: bool) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("cairn.dev", "v1", kind), plural);
    if namespaced {
        Api::namespaced_with(client.clone(), "cairn", &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    }
}

/// What the projection shows: (kind, name, the status field that matters).
async fn shown(k: &KubeApiServer) -> Option<Vec<(String, String, String)>> {
    let client = k.client().await.ok()?;
    let mut out = Vec::new();
    for (kind, plural, namespaced) in KINDS {
        let list = api(&client, kind, plural, namespaced)
            .list(&ListParams::default())
            .await
            .ok()?;
        for o in list.items {
            let status = o.data.get("status").cloned().unwrap_or_default();
            let what = match kind {
                "TrainingJob" => status["phase"].as_str().unwrap_or("").to_string(),
                "GpuNode" => status["state"].as_str().unwrap_or("").to_string(),
                "ModelVersion" => status["stage"].as_str().unwrap_or("").to_string(),
                _ => String::new(),
            };
            out.push((kind.to_string(), o.metadata.name.unwrap_or_default(), what));
        }
    }
    Some(out)
}

/// Waits until the projection shows the job Succeeded, the ready node and version 1 in
/// Staging; returns everything shown.
async fn complete(
    k: &KubeApiServer,
    within: Duration,
) -> anyhow::Result<Vec<(String, String, String)>> {
    eventually(within, "the log projected", || async {
        let s = shown(k).await?;
        let has = |kind: &str, name: &str, what: &str| {
            s.iter()
                .any(|(k, n, w)| k == kind && n == name && w == what)
        };
        (has("TrainingJob", "hello", "Succeeded")
            && s.iter().any(|(k, _, w)| k == "GpuNode" && w == "Ready")
            && has("ModelVersion", "bert-v1", "Staging")
            && has("Model", "bert", ""))
        .then_some(s)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_projected_and_restored_after_the_api_server_loses_everything(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut k = KubeApiServer::start(&dir.path().join("kube"))?;
    install_httproute_crd(&k).await?;
    let addr = format!("127.0.0.1:{}", free_port());
    let mut spec = ServerSpec::dev(bin("cairn-server"), addr.clone(), dir.path().join("dev"));
    spec.port_range = Some((27000, 27999));
    spec.kubeconfig = Some(k.kubeconfig.clone());
    let _server = Server::start_new(spec).await?;
    let endpoints = vec![addr];

    // --- a job that runs to Succeeded, and a model version in Staging
    let job = json!({
        "apiVersion": "cairn.dev/v1", "kind": "TrainingJob", "metadata": {"name": "hello"},
        "spec": {"framework": "generic", "roles": {"run": {"replicas": 1, "command": ["true"]}}}
    });
    let file = dir.path().join("hello.json");
    std::fs::write(&file, job.to_string())?;
    eventually(Duration::from_secs(20), "the job is submitted", || {
        let (endpoints, file) = (endpoints.clone(), file.display().to_string());
        async move { cli_json(&endpoints, &["job", "submit", "-f", &file]).ok() }
    })
    .await?;
    cli_json(
        &endpoints,
        &[
            "model",
            "register",
            "bert",
            "--source",
            "s3://m/bert/1",
            "--create",
        ],
    )?;
    cli_json(&endpoints, &["model", "stage", "bert", "1", "Staging"])?;

    // --- projected: CRDs Established with their columns, and every object
    complete(&k, Duration::from_secs(90)).await?;
    let client = k.client().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let tj = crds.get("trainingjobs.cairn.dev").await?;
    let columns: Vec<String> = tj.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(columns, ["Phase", "GPUs", "Nodes", "Restarts", "Age"]);
    assert!(tj.status.and_then(|s| s.conditions).is_some_and(|c| c
        .iter()
        .any(|c| c.type_ == "Established" && c.status == "True")));
    let hello = api(&client, "TrainingJob", "trainingjobs", true)
        .get("hello")
        .await?;
    assert_eq!(
        hello.data["spec"]["framework"], "generic",
        "the spec as accepted"
    );
    let annotations = hello.metadata.annotations.clone().unwrap_or_default();
    assert!(annotations
        .get("cairn.dev/seq")
        .is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n > 0)));

    // `cairn cluster status` says what the projector does.
    let status = cli_json(&endpoints, &["cluster", "status"])?;
    let projecting = status["members"][0]["kubernetes"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(projecting.starts_with("leading: "), "{status}");

    // `cairn k8s status`: caught up (no lag), checkpointed in the log, objects per kind.
    let k8s = eventually(
        Duration::from_secs(20),
        "caught up and checkpointed",
        || {
            let endpoints = endpoints.clone();
            async move {
                let p = cli_json(&endpoints, &["k8s", "status"]).ok()?;
                let through = p["projected_through"].as_u64()?;
                (p["state"] == "leading"
                    && through == p["last_sequence"].as_u64()?
                    && p["checkpoint"].as_u64()? > 0
                    && p["lag_ms"].as_u64().unwrap_or(0) == 0)
                    .then_some(p)
            }
        },
    )
    .await?;
    assert_eq!(k8s["objects"]["Model"], 1, "{k8s}");
    assert_eq!(k8s["objects"]["ModelVersion"], 1, "{k8s}");
    assert_eq!(k8s["objects"]["TrainingJob"], 1, "{k8s}");
    let events = cli_json(
        &endpoints,
        &["events", "list", "--entity", "projection/kubernetes"],
    )?;
    assert!(
        events.to_string().contains("projection_checkpointed"),
        "{events}"
    );

    // `cairn k8s resync`: a stamp changed by hand (which no watch reports) is repaired
    // by the full reconcile it asks for, right after a periodic one (10 s apart).
    let reconciled = |p: &serde_json::Value| p["last_reconcile_ms"].as_i64().unwrap_or(0);
    let before = reconciled(&k8s);
    eventually(Duration::from_secs(20), "a periodic reconcile", || {
        let endpoints = endpoints.clone();
        async move {
            let p = cli_json(&endpoints, &["k8s", "status"]).ok()?;
            (reconciled(&p) != before).then_some(())
        }
    })
    .await?;
    let bert = api(&client, "Model", "models", true);
    let seq = bert
        .get("bert")
        .await?
        .metadata
        .annotations
        .unwrap_or_default()["cairn.dev/seq"]
        .clone();
    bert.patch(
        "bert",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"annotations": {"cairn.dev/seq": "1"}}})),
    )
    .await?;
    let asked = std::time::Instant::now();
    cli_json(&endpoints, &["k8s", "resync"])?;
    eventually(Duration::from_secs(3), "the stamp repaired", || {
        let bert = bert.clone();
        let seq = seq.clone();
        async move {
            let o = bert.get("bert").await.ok()?;
            (o.metadata.annotations?.get("cairn.dev/seq")? == &seq).then_some(())
        }
    })
    .await?;
    eprintln!(
        "a resync repaired a stale object {:?} after it was asked",
        asked.elapsed()
    );

    // --- serving in Kubernetes terms: a Service per revision without a selector, an
    // EndpointSlice of its ready replicas, an HTTPRoute with the revisions' weights.
    let source = format!("{EXAMPLES}/models/linear-v1.json");
    cli_json(
        &endpoints,
        &[
            "model", "register", "linear", "--source", &source, "--create",
        ],
    )?;
    let deployment = json!({
        "apiVersion": "cairn.dev/v1", "kind": "ModelDeployment",
        "metadata": {"name": "linear"},
        "spec": {
            "model": {"name": "linear", "version": 1},
            "replicas": 2,
            "template": {"command": ["python3", format!("{EXAMPLES}/model_server.py")], "gpus": 1},
            "readinessProbe": {"httpGet": {"path": "/healthz"}, "periodSeconds": 1}
        }
    });
    let file = dir.path().join("linear.json");
    std::fs::write(&file, deployment.to_string())?;
    cli_json(
        &endpoints,
        &["deploy", "apply", "-f", &file.display().to_string()],
    )?;
    let ready_ports = eventually(Duration::from_secs(90), "2 ready replicas", || {
        let endpoints = endpoints.clone();
        async move {
            let d = cli_json(&endpoints, &["deploy", "get", "linear"]).ok()?;
            let mut ports: Vec<u64> = d["revisions"][0]["replicas"]
                .as_array()?
                .iter()
                .filter(|x| x["phase"] == "Ready")
                .filter_map(|x| x["port"].as_u64())
                .collect();
            ports.sort();
            (ports.len() == 2 && d["traffic"] == json!({"1": 100})).then_some(ports)
        }
    })
    .await?;
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(client.clone(), "cairn");
    let slices = api_in(
        &client,
        "discovery.k8s.io",
        "v1beta1",
        "EndpointSlice",
        "endpointslices",
    );
    let routes = api_in(
        &client,
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
        "httproutes",
    );
    let (service, route) = eventually(Duration::from_secs(30), "the serving objects", || {
        let (services, slices, routes) = (services.clone(), slices.clone(), routes.clone());
        let ready_ports = ready_ports.clone();
        async move {
            let service = services.get_opt("linear-r1").await.ok()??;
            let listed = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=linear-r1"))
                .await
                .ok()?;
            let mut ports: Vec<u64> = Vec::new();
            for s in &listed.items {
                let endpoints = s.data["endpoints"].as_array()?;
                let ready = endpoints.iter().all(|e| {
                    e["conditions"]["ready"] == true && e["addresses"] == json!(["127.0.0.1"])
                });
                if !ready || s.data["addressType"] != "IPv4" {
                    return None;
                }
                ports.extend(
                    s.data["ports"]
                        .as_array()?
                        .iter()
                        .filter_map(|p| p["port"].as_u64()),
                );
            }
            ports.sort();
            let route = routes.get_opt("linear").await.ok()??;
            let routed = route.data["spec"]["rules"][0]["backendRefs"] != json!([]);
            (ports == ready_ports && routed).then_some((service, route))
        }
    })
    .await?;
    let spec = service.spec.unwrap_or_default();
    assert!(spec.selector.is_none(), "a selector-less Service: {spec:?}");
    assert_eq!(
        spec.ports
            .unwrap_or_default()
            .iter()
            .map(|p| (p.name.clone(), p.port))
            .collect::<Vec<_>>(),
        [(Some("http".to_string()), 80)]
    );
    // The route, shaped as Gateway API v1 has it.
    assert_eq!(route.data["spec"]["parentRefs"], json!([{"name": "cairn"}]));
    assert_eq!(
        route.data["spec"]["rules"],
        json!([{"backendRefs": [{"name": "linear-r1", "port": 80, "weight": 100}]}])
    );
    let k8s = cli_json(&endpoints, &["k8s", "status"])?;
    assert_eq!(k8s["unserved"], json!([]), "{k8s}");

    // --- intake: TrainingJobs applied in Kubernetes
    let jobs = api(&client, "TrainingJob", "trainingjobs", true);
    let user_job = |name: &str,
                    command: serde_json::Value,
                    replicas: i64|
     -> anyhow::Result<DynamicObject> {
        Ok(serde_json::from_value(json!({
            "apiVersion": "cairn.dev/v1", "kind": "TrainingJob",
            "metadata": {"name": name, "namespace": "cairn", "labels": {"team": "vision"}},
            "spec": {"framework": "generic", "roles": {"run": {"replicas": replicas, "command": command}}}
        }))?)
    };
    for (name, command, replicas) in [
        ("from-kubectl", json!(["true"]), 1),
        ("bad-spec", json!(["true"]), -1),
        ("long", json!(["sleep", "300"]), 1),
    ] {
        jobs.create(&PostParams::default(), &user_job(name, command, replicas)?)
            .await?;
    }
    let verdict = |name: &'static str| {
        let jobs = jobs.clone();
        eventually(Duration::from_secs(30), "the intake's verdict", move || {
            let jobs = jobs.clone();
            async move {
                let o = jobs.get(name).await.ok()?;
                let intake = o.data["status"]["intake"].clone();
                (!intake.is_null()).then_some(o)
            }
        })
    };
    let accepted = verdict("from-kubectl").await?;
    assert_eq!(
        accepted.data["status"]["intake"]["accepted"], true,
        "{:?}",
        accepted.data
    );
    let refused = verdict("bad-spec").await?;
    assert_eq!(refused.data["status"]["intake"]["accepted"], false);
    let why = refused.data["status"]["intake"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(why.contains("spec.roles.run.replicas"), "{why}");
    let phase = |name: &'static str, want: &'static str| {
        let endpoints = endpoints.clone();
        eventually(Duration::from_secs(60), want, move || {
            let endpoints = endpoints.clone();
            async move {
                let j = cli_json(&endpoints, &["job", "get", name]).ok()?;
                (j["phase"] == want).then_some(j)
            }
        })
    };
    phase("from-kubectl", "Succeeded").await?;
    eventually(
        Duration::from_secs(30),
        "the status shows Succeeded",
        || {
            let jobs = jobs.clone();
            async move {
                let o = jobs.get("from-kubectl").await.ok()?;
                let labels = o.metadata.labels.clone().unwrap_or_default();
                (o.data["status"]["phase"] == "Succeeded"
                    && o.data["spec"]["roles"]["run"]["command"] == json!(["true"])
                    && !labels.contains_key("app.kubernetes.io/managed-by"))
                .then_some(())
            }
        },
    )
    .await?;
    phase("long", "Running").await?;
    jobs.delete("long", &DeleteParams::default()).await?;
    phase("long", "Cancelled").await?;

    // Every TrainingJob example, applied in Kubernetes as it is, is taken in and runs
    // to Succeeded.
    let mut names = Vec::new();
    for f in &cairn_tests::example_jobs()? {
        let mut o: DynamicObject = serde_yaml_ng::from_str(&std::fs::read_to_string(f)?)?;
        assert_eq!(
            o.types.as_ref().map(|t| t.kind.as_str()),
            Some("TrainingJob")
        );
        o.metadata.namespace = Some("cairn".into());
        names.push(o.metadata.name.clone().unwrap_or_default());
        jobs.create(&PostParams::default(), &o).await?;
    }
    assert!(names.len() >= 7, "an example per framework: {names:?}");
    for name in &names {
        let j = eventually(Duration::from_secs(120), name, || {
            let (endpoints, name) = (endpoints.clone(), name.clone());
            async move {
                let j = cli_json(&endpoints, &["job", "get", &name]).ok()?;
                matches!(j["phase"].as_str(), Some("Succeeded" | "Failed")).then_some(j)
            }
        })
        .await?;
        assert_eq!(j["phase"], "Succeeded", "{name}: {j}");
    }
    jobs.delete("bad-spec", &DeleteParams::default()).await?;
    // The deleted job stays deleted.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert!(
        jobs.get_opt("long").await?.is_none(),
        "a job its user deleted came back"
    );
    let first = complete(&k, Duration::from_secs(30)).await?;
    assert!(first
        .iter()
        .any(|(k, n, w)| k == "TrainingJob" && n == "from-kubectl" && w == "Succeeded"));

    // --- one object deleted by hand is back at once (a watch sees it; the full
    // reconcile runs only every 10 s)
    let models = api(&client, "Model", "models", true);
    models.delete("bert", &DeleteParams::default()).await?;
    let gone = std::time::Instant::now();
    eventually(Duration::from_secs(30), "the model is back", || {
        let models = models.clone();
        async move { models.get_opt("bert").await.ok().flatten() }
    })
    .await?;
    let back = gone.elapsed();
    eprintln!("a deleted object was back after {back:?}");
    assert!(back < Duration::from_secs(3), "back after {back:?}");

    // --- every custom resource and every CRD deleted by hand: all back from the log
    for (kind, plural, namespaced) in KINDS {
        let a = api(&client, kind, plural, namespaced);
        for o in a.list(&ListParams::default()).await?.items {
            a.delete(
                &o.metadata.name.unwrap_or_default(),
                &DeleteParams::default(),
            )
            .await?;
        }
    }
    for crd in crds.list(&ListParams::default()).await?.items {
        crds.delete(
            &crd.metadata.name.unwrap_or_default(),
            &DeleteParams::default(),
        )
        .await?;
    }
    let first = sorted(first);
    restored_as(&k, &first, Duration::from_secs(90)).await?;

    // --- the api-server restarts on an empty etcd: everything back again
    k.restart_empty()?;
    restored_as(&k, &first, Duration::from_secs(120)).await?;
    Ok(())
}

/// The objects of a kind of any group.
fn api_in(
    client: &kube::Client,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Api::namespaced_with(client.clone(), "cairn", &ar)
}

/// The `HTTPRoute` resource of the Gateway API, which a Gateway implementation installs
/// in a real cluster: here a CRD without a schema stands in for it, so the test checks
/// the shape of the routes Cairn writes itself.
async fn install_httproute_crd(k: &KubeApiServer) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(k.client().await?);
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {
            "name": "httproutes.gateway.networking.k8s.io",
            // The group is one of Kubernetes' own: the api-server asks for this.
            "annotations": {"api-approved.kubernetes.io": "unapproved, a stand-in for the Gateway API's CRD"}
        },
        "spec": {
            "group": "gateway.networking.k8s.io", "scope": "Namespaced",
            "names": {"kind": "HTTPRoute", "plural": "httproutes", "singular": "httproute", "listKind": "HTTPRouteList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    }))?;
    crds.create(&PostParams::default(), &crd).await?;
    eventually(Duration::from_secs(30), "HTTPRoute established", || {
        let crds = crds.clone();
        async move {
            let c = crds
                .get("httproutes.gateway.networking.k8s.io")
                .await
                .ok()?;
            c.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        }
    })
    .await
}

/// Waits until the projection shows exactly `want` (sorted), each object at its state.
async fn restored_as(
    k: &KubeApiServer,
    want: &[(String, String, String)],
    within: Duration,
) -> anyhow::Result<()> {
    let last = std::sync::Mutex::new(Vec::new());
    let done = eventually(within, "restored as it was", || async {
        let s = sorted(shown(k).await?);
        let same = s == want;
        *last.lock().unwrap_or_else(|p| p.into_inner()) = s;
        same.then_some(())
    })
    .await;
    let last = last.into_inner().unwrap_or_else(|p| p.into_inner());
    done.map_err(|e| anyhow::anyhow!("{e}: shown {last:?}, want {want:?}"))
}

fn sorted(mut v: Vec<(String, String, String)>) -> Vec<(String, String, String)> {
    v.sort();
    v
}

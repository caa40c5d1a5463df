//! `cairn k8s`: the Kubernetes projection as the leading member runs it (how far it
//! got, how far behind it is, its objects per kind, its last full reconcile), and a
//! full resync on request: an event in the log, carried out by whichever member leads.

use cairn_proto as pb;
use clap::Subcommand;
use pb::command::Body;

use crate::ctx::Ctx;
use crate::output::{emit, table, time, Format};

#[derive(Subcommand)]
pub enum K8sCmd {
    /// The projector's lag (events and seconds), checkpoint, objects per kind and last
    /// full reconcile.
    Status,
    /// Compare everything Kubernetes holds with the log now, and repair it.
    Resync,
}

pub async fn run(ctx: &mut Ctx, c: K8sCmd) -> anyhow::Result<()> {
    match c {
        K8sCmd::Status => {
            let s = ctx
                .cluster
                .call(|mut c| async move { c.cluster_status(pb::ClusterStatusRequest {}).await })
                .await?;
            let p = s
                .members
                .iter()
                .find(|m| m.node_id == s.leader_id)
                .and_then(|m| m.kubernetes_projection.clone())
                .unwrap_or_default();
            emit(ctx.format, &p, || {
                let mut t = table(&["", ""]);
                let behind = p.last_sequence.saturating_sub(p.projected_through);
                let objects: Vec<String> =
                    p.objects.iter().map(|(k, n)| format!("{k} {n}")).collect();
                let mut rows = vec![
                    (
                        "state",
                        format!("{} (leader: node {})", p.state, s.leader_id),
                    ),
                    ("namespace", p.namespace.clone()),
                    (
                        "projected through",
                        format!(
                            "sequence {} of {}: {behind} events, {:.1} s behind",
                            p.projected_through,
                            p.last_sequence,
                            p.lag_ms as f64 / 1000.0
                        ),
                    ),
                    (
                        "checkpoint",
                        format!(
                            "sequence {} (this leader resumed from {})",
                            p.checkpoint, p.resumed_from
                        ),
                    ),
                    ("objects", objects.join(", ")),
                    (
                        "last full reconcile",
                        format!(
                            "{}: {} ({} since it began to lead)",
                            time(p.last_reconcile_ms),
                            p.last_reconcile,
                            p.reconciles
                        ),
                    ),
                ];
                if !p.unserved.is_empty() {
                    rows.push(("not projected", p.unserved.join(", ")));
                }
                for why in &p.refused {
                    rows.push(("refused", why.clone()));
                }
                if !p.error.is_empty() {
                    rows.push(("error", p.error.clone()));
                }
                for (k, v) in rows {
                    t.add_row(vec![k.to_string(), v]);
                }
                t
            })?;
            if ctx.format == Format::Table && matches!(p.state.as_str(), "" | "off") {
                println!("no member projects into Kubernetes: start cairn-server with --kubeconfig, or [kubernetes] in its configuration");
            }
            Ok(())
        }
        K8sCmd::Resync => {
            let body = Body::ResyncProjection(pb::ResyncProjection {
                name: "kubernetes".into(),
            });
            ctx.submit_and_print(body, None).await
        }
    }
}

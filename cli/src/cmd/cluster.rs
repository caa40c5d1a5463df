//! `cairn cluster`: the Raft cluster's status, and changes to its membership.

use cairn_proto as pb;
use clap::Subcommand;

use crate::ctx::Ctx;
use crate::output::{self, emit, table, Format};

#[derive(Subcommand)]
pub enum ClusterCmd {
    /// Leader, term, and each member's role, commit and applied index.
    Status,
    /// Add a server as a non-voting learner (it catches up from the leader).
    AddLearner { node_id: u64, address: String },
    /// Make a learner a voter.
    Promote { node_id: u64 },
    /// Remove a member.
    Remove { node_id: u64 },
}

pub async fn run(ctx: &mut Ctx, c: ClusterCmd) -> anyhow::Result<()> {
    match c {
        ClusterCmd::Status => {
            let s = ctx
                .cluster
                .call(|mut c| async move { c.cluster_status(pb::ClusterStatusRequest {}).await })
                .await?;
            emit(ctx.format, &s, || {
                let mut t = table(&[
                    "ID", "ADDRESS", "ROLE", "TERM", "COMMIT", "APPLIED", "LAST LOG", "LAST SEQ",
                    "RSS",
                ]);
                for m in &s.members {
                    t.add_row(vec![
                        m.node_id.to_string(),
                        m.address.clone(),
                        if m.error.is_empty() {
                            m.role.clone()
                        } else {
                            format!("{} ({})", m.role, m.error)
                        },
                        m.term.to_string(),
                        m.commit_index.to_string(),
                        m.applied_index.to_string(),
                        m.last_log_index.to_string(),
                        m.last_sequence.to_string(),
                        output::bytes(m.rss_bytes),
                    ]);
                }
                t
            })?;
            if ctx.format == Format::Table {
                match s.leader_id {
                    0 => println!("no leader (term {})", s.term),
                    l => println!("leader: node {l}, term {}", s.term),
                }
                for m in s.members.iter().filter(|m| !m.kubernetes.is_empty()) {
                    println!("kubernetes (node {}): {}", m.node_id, m.kubernetes);
                }
            }
            Ok(())
        }
        ClusterCmd::AddLearner { node_id, address } => {
            let r = ctx
                .cluster
                .call_write(|mut c| {
                    let address = address.clone();
                    async move {
                        c.add_learner(pb::AddLearnerRequest { node_id, address })
                            .await
                    }
                })
                .await?;
            print_membership(ctx, &r)
        }
        ClusterCmd::Promote { node_id } => {
            let r = ctx
                .cluster
                .call_write(|mut c| async move { c.promote(pb::PromoteRequest { node_id }).await })
                .await?;
            print_membership(ctx, &r)
        }
        ClusterCmd::Remove { node_id } => {
            let r = ctx
                .cluster
                .call_write(|mut c| async move {
                    c.remove_member(pb::RemoveMemberRequest { node_id }).await
                })
                .await?;
            print_membership(ctx, &r)
        }
    }
}

fn print_membership(ctx: &Ctx, r: &pb::MembershipResponse) -> anyhow::Result<()> {
    emit(ctx.format, r, || {
        let mut t = table(&["VOTERS", "LEARNERS", "RAFT INDEX"]);
        let ids = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        t.add_row(vec![
            ids(&r.voters),
            ids(&r.learners),
            r.raft_index.to_string(),
        ]);
        t
    })
}

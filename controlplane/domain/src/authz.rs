//! Who may issue what: a pure function of a command's actor and body, checked at the
//! edge before anything is proposed and again in `decide`, so a command is judged the
//! same on every member, forwarded or not.
//!
//! An actor `agent/<node>` is an agent authenticated by its certificate (the edge
//! stamps the actor; a client cannot choose it): it may only report about `<node>`.

use crate::core::{Command, CommandBody};
use crate::deployment::DeploymentCommand;
use crate::job::JobCommand;
use crate::node::NodeCommand;
use crate::Rejection;

/// The prefix of the actor of an authenticated agent.
pub const AGENT_ACTOR: &str = "agent/";

/// Whether `cmd`'s actor may issue it.
pub fn authorize(cmd: &Command) -> Result<(), Rejection> {
    let Some(agent_node) = cmd.actor.strip_prefix(AGENT_ACTOR) else {
        return Ok(());
    };
    match reported_node(&cmd.body) {
        Some(node) if node == agent_node => Ok(()),
        Some(node) => Err(Rejection::PermissionDenied(format!(
            "{}: an agent may only report about its own node, not node/{node}",
            cmd.actor
        ))),
        None => Err(Rejection::PermissionDenied(format!(
            "{}: an agent may only report about its own node",
            cmd.actor
        ))),
    }
}

/// The node an agent's report is about; `None` for anything that is not a report.
fn reported_node(body: &CommandBody) -> Option<&str> {
    match body {
        CommandBody::Node(c) => match c {
            NodeCommand::Register { node, .. }
            | NodeCommand::ReportGpuHealth { node, .. }
            | NodeCommand::AcquirePortLeases { node, .. }
            | NodeCommand::RenewPortLeases { node, .. }
            | NodeCommand::ReleasePortLeases { node, .. }
            | NodeCommand::ReportPortViolation { node, .. } => Some(node),
            NodeCommand::MarkLost { .. }
            | NodeCommand::MarkRecovered { .. }
            | NodeCommand::Cordon { .. }
            | NodeCommand::Uncordon { .. }
            | NodeCommand::ExpirePortLeases => None,
        },
        CommandBody::Job(c) => match c {
            JobCommand::ReportReplica { node, .. } => Some(node),
            JobCommand::Submit { .. }
            | JobCommand::Cancel { .. }
            | JobCommand::Schedule
            | JobCommand::EnforceDeadline { .. } => None,
        },
        CommandBody::Deployment(c) => match c {
            DeploymentCommand::ReportServing { node, .. } => Some(node),
            DeploymentCommand::Apply { .. }
            | DeploymentCommand::Delete { .. }
            | DeploymentCommand::Scale { .. }
            | DeploymentCommand::Pause { .. }
            | DeploymentCommand::Resume { .. }
            | DeploymentCommand::Promote { .. }
            | DeploymentCommand::Rollback { .. }
            | DeploymentCommand::Advance { .. } => None,
        },
        CommandBody::Namespace(_)
        | CommandBody::Queue(_)
        | CommandBody::Cron(_)
        | CommandBody::Model(_)
        | CommandBody::AddNote { .. }
        | CommandBody::ReconcileMembers => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::decide;
    use crate::testkit::cmd;
    use crate::{Position, State};

    fn health(node: &str) -> CommandBody {
        CommandBody::Node(NodeCommand::ReportGpuHealth {
            node: node.into(),
            gpus: Vec::new(),
            token_digest: b"t".to_vec(),
        })
    }

    fn as_actor(actor: &str, body: CommandBody) -> Command {
        Command {
            actor: actor.into(),
            ..cmd(body)
        }
    }

    #[test]
    fn an_agent_reports_about_its_own_node_only_and_decide_says_so_too() {
        assert_eq!(authorize(&as_actor("agent/n1", health("n1"))), Ok(()));
        let other = as_actor("agent/n1", health("n2"));
        let Err(Rejection::PermissionDenied(why)) = authorize(&other) else {
            panic!("a report about another node allowed");
        };
        assert!(why.contains("node/n2"), "{why}");
        let note = CommandBody::AddNote {
            entity: crate::EntityKey::new("namespace", "x"),
            text: "hi".into(),
        };
        assert!(matches!(
            authorize(&as_actor("agent/n1", note.clone())),
            Err(Rejection::PermissionDenied(_))
        ));
        // Users and the leader's own workers are not agents.
        assert_eq!(authorize(&as_actor("user/alice", note)), Ok(()));
        assert_eq!(
            authorize(&as_actor("system/liveness", health("n2"))),
            Ok(())
        );
        // `decide` refuses it on every member before looking at the node at all.
        let pos = Position {
            raft_index: 1,
            raft_term: 1,
        };
        assert!(matches!(
            decide(&State::default(), &other, pos),
            Err(Rejection::PermissionDenied(_))
        ));
    }
}

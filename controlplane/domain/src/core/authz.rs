//! Who may issue what: a pure function of a command's actor and body, checked at the
//! edge before anything is proposed and again in `decide`, so a command is judged the
//! same on every member, forwarded or not.
//!
//! An actor `agent/<node>` is an agent authenticated by its certificate (the edge
//! stamps the actor; a client cannot choose it): it may only report about `<node>`. A
//! user authenticated under TLS has a [`Role`], stamped with the actor: a viewer only
//! reads, an operator runs the workloads (namespaces, jobs, crons, models, deployments,
//! leases, notes), an admin also the cluster (queues and quotas, cordons, what agents
//! and the leader report). A model's protected stages and aliases are judged in `decide`
//! (`model::check_protection`), since that needs the model's state. Commands without a role come from members, the leader's own
//! workers or a plaintext (loopback) client, none of which is judged here.

pub use crate::role::Role;

use super::{Command, CommandBody};
use crate::deployment::DeploymentCommand;
use crate::job::JobCommand;
use crate::model::ModelCommand;
use crate::node::NodeCommand;
use crate::projection::ProjectionCommand;
use crate::token::Tokens;
use crate::Rejection;

/// The prefix of the actor of an authenticated agent.
pub const AGENT_ACTOR: &str = "agent/";

/// The least role that may issue `body`.
pub fn required_role(body: &CommandBody) -> Role {
    match body {
        CommandBody::Namespace(_) | CommandBody::Cron(_) | CommandBody::AddNote { .. } => {
            Role::Operator
        }
        // Who may move a protected stage or alias is an admin's to say.
        CommandBody::Model(ModelCommand::Protect { .. }) => Role::Admin,
        CommandBody::Model(_) => Role::Operator,
        CommandBody::Queue(_) | CommandBody::Token(_) | CommandBody::ReconcileMembers => {
            Role::Admin
        }
        CommandBody::Node(c) => match c {
            NodeCommand::AcquirePortLeases { .. } | NodeCommand::ReleasePortLeases { .. } => {
                Role::Operator
            }
            NodeCommand::Register { .. }
            | NodeCommand::ReportGpuHealth { .. }
            | NodeCommand::RenewPortLeases { .. }
            | NodeCommand::ReportPortViolation { .. }
            | NodeCommand::MarkLost { .. }
            | NodeCommand::MarkRecovered { .. }
            | NodeCommand::Cordon { .. }
            | NodeCommand::Uncordon { .. }
            | NodeCommand::ExpirePortLeases => Role::Admin,
        },
        CommandBody::Job(c) => match c {
            JobCommand::Submit { .. } | JobCommand::Cancel { .. } => Role::Operator,
            JobCommand::Schedule
            | JobCommand::EnforceDeadline { .. }
            | JobCommand::ReportReplica { .. } => Role::Admin,
        },
        CommandBody::Projection(c) => match c {
            ProjectionCommand::Checkpoint { .. } => Role::Admin,
            ProjectionCommand::Resync { .. } => Role::Operator,
        },
        CommandBody::Deployment(c) => match c {
            DeploymentCommand::ReportServing { .. } => Role::Admin,
            DeploymentCommand::Apply { .. }
            | DeploymentCommand::Delete { .. }
            | DeploymentCommand::Scale { .. }
            | DeploymentCommand::Pause { .. }
            | DeploymentCommand::Resume { .. }
            | DeploymentCommand::Promote { .. }
            | DeploymentCommand::Rollback { .. }
            | DeploymentCommand::Advance { .. } => Role::Operator,
        },
    }
}

/// Whether `cmd`'s actor may issue it.
pub fn authorize(cmd: &Command) -> Result<(), Rejection> {
    if let Some(role) = cmd.role {
        let need = required_role(&cmd.body);
        if role < need {
            return Err(Rejection::PermissionDenied(format!(
                "{} has the role {role}; this needs {need}",
                cmd.actor
            )));
        }
    }
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

/// A command that came with a bearer token is accepted only while the token is
/// valid at the command's (leader) time, for the user and role it names: a
/// revocation earlier in the log refuses it on every member alike.
pub fn check_bearer(tokens: &Tokens, cmd: &Command) -> Result<(), Rejection> {
    if cmd.bearer.is_empty() {
        return Ok(());
    }
    let (name, t) = crate::token::valid(tokens, &cmd.bearer, cmd.timestamp_ms)
        .map_err(Rejection::PermissionDenied)?;
    if cmd.actor != format!("user/{}", t.user) || cmd.role != Some(t.role) {
        return Err(Rejection::PermissionDenied(format!(
            "token/{name} authenticates user/{} as {}, not {} as {:?}",
            t.user, t.role, cmd.actor, cmd.role
        )));
    }
    Ok(())
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
        | CommandBody::Token(_)
        | CommandBody::Cron(_)
        | CommandBody::Model(_)
        | CommandBody::Projection(_)
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
    fn roles_nest_and_decide_refuses_what_a_role_may_not_do() {
        let with = |role, body| Command {
            role: Some(role),
            ..as_actor("user/u", body)
        };
        let ns = CommandBody::Namespace(crate::namespace::NamespaceCommand::Create {
            name: "x".into(),
            labels: Default::default(),
        });
        let cordon = CommandBody::Node(NodeCommand::Cordon {
            node: "n1".into(),
            gpu_uuid: None,
            reason: String::new(),
            drain: false,
        });
        assert!(matches!(
            authorize(&with(Role::Viewer, ns.clone())),
            Err(Rejection::PermissionDenied(why)) if why.contains("user/u has the role viewer; this needs operator")
        ));
        assert_eq!(authorize(&with(Role::Operator, ns.clone())), Ok(()));
        assert_eq!(authorize(&with(Role::Admin, ns.clone())), Ok(()));
        assert!(authorize(&with(Role::Operator, cordon.clone())).is_err());
        assert_eq!(authorize(&with(Role::Admin, cordon)), Ok(()));
        let pos = Position {
            raft_index: 1,
            raft_term: 1,
        };
        assert!(matches!(
            decide(&State::default(), &with(Role::Viewer, ns), pos),
            Err(Rejection::PermissionDenied(_))
        ));
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn a_command_with_a_revoked_or_borrowed_token_is_refused_by_decide() {
        use crate::testkit::apply;
        use crate::token::TokenCommand;
        let mut s = State::new();
        let create = cmd(CommandBody::Token(TokenCommand::Create {
            name: "ci".into(),
            user: "carol".into(),
            role: Role::Operator,
            digest: vec![5; 32],
            expires_ms: None,
        }));
        apply(&mut s, &create).expect("created");
        let ns = CommandBody::Namespace(crate::namespace::NamespaceCommand::Create {
            name: "x".into(),
            labels: Default::default(),
        });
        let by_token = |actor: &str, role| Command {
            role: Some(role),
            bearer: vec![5; 32],
            ..as_actor(actor, ns.clone())
        };
        // The token names carol as an operator: anyone else, or another role, is refused.
        assert!(check_bearer(&s.tokens, &by_token("user/carol", Role::Operator)).is_ok());
        assert!(check_bearer(&s.tokens, &by_token("user/mallory", Role::Operator)).is_err());
        assert!(check_bearer(&s.tokens, &by_token("user/carol", Role::Admin)).is_err());
        let revoke = cmd(CommandBody::Token(TokenCommand::Revoke {
            name: "ci".into(),
        }));
        apply(&mut s, &revoke).expect("revoked");
        let pos = Position {
            raft_index: 9,
            raft_term: 1,
        };
        let Err(Rejection::PermissionDenied(why)) =
            decide(&s, &by_token("user/carol", Role::Operator), pos)
        else {
            panic!("a revoked token's command was accepted");
        };
        assert!(why.contains("revoked"), "{why}");
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

//! Deployment commands and events to protobuf (the other direction is matched with every
//! other variant in `command.rs` and `event.rs`).

use cairn_domain::deployment::{
    DeploymentCommand, DeploymentEvent, ScaleLoad, ServingPlacement, ServingReport,
};
use cairn_proto as pb;
use pb::command::Body;
use pb::event::Payload;

use super::Malformed;

pub(super) fn command_to_pb(c: &DeploymentCommand, token_digest: &mut Vec<u8>) -> Body {
    match c {
        DeploymentCommand::Apply { doc } => Body::ApplyDeployment(pb::ApplyDeployment {
            spec_json: doc.to_json(),
        }),
        DeploymentCommand::Delete { name } => {
            Body::DeleteDeployment(pb::DeleteDeployment { name: name.clone() })
        }
        DeploymentCommand::Scale {
            name,
            replicas,
            reason,
            load,
        } => Body::ScaleDeployment(pb::ScaleDeployment {
            name: name.clone(),
            replicas: *replicas,
            reason: reason.clone(),
            load: load.map(load_to_pb),
        }),
        DeploymentCommand::Pause { name, reason } => Body::PauseDeployment(pb::PauseDeployment {
            name: name.clone(),
            reason: reason.clone(),
        }),
        DeploymentCommand::Resume { name } => {
            Body::ResumeDeployment(pb::ResumeDeployment { name: name.clone() })
        }
        DeploymentCommand::Promote { name } => {
            Body::PromoteDeployment(pb::PromoteDeployment { name: name.clone() })
        }
        DeploymentCommand::Rollback { name, reason } => {
            Body::RollbackDeployment(pb::RollbackDeployment {
                name: name.clone(),
                reason: reason.clone(),
            })
        }
        DeploymentCommand::Advance { name } => {
            Body::AdvanceDeployment(pb::AdvanceDeployment { name: name.clone() })
        }
        DeploymentCommand::ReportServing {
            node,
            name,
            revision,
            index,
            attempt,
            report,
            token_digest: t,
        } => {
            token_digest.clone_from(t);
            use pb::report_serving::Report;
            let report = match report {
                ServingReport::Started { pid } => Report::Started(pb::ServingStarted { pid: *pid }),
                ServingReport::Ready => Report::Ready(pb::ServingReady {}),
                ServingReport::NotReady { reason } => Report::NotReady(pb::ServingNotReady {
                    reason: reason.clone(),
                }),
                ServingReport::Exited { code, signal } => Report::Exited(pb::ServingExited {
                    code: *code,
                    signal: *signal,
                }),
            };
            Body::ReportServing(pb::ReportServing {
                node: node.clone(),
                name: name.clone(),
                revision: *revision,
                index: *index,
                attempt: *attempt,
                report: Some(report),
            })
        }
    }
}

/// What an agent saw of a serving replica.
pub(super) fn report(r: &pb::ReportServing) -> Result<ServingReport, Malformed> {
    use pb::report_serving::Report;
    Ok(match &r.report {
        Some(Report::Started(x)) => ServingReport::Started { pid: x.pid },
        Some(Report::Ready(_)) => ServingReport::Ready,
        Some(Report::NotReady(x)) => ServingReport::NotReady {
            reason: x.reason.clone(),
        },
        Some(Report::Exited(x)) => ServingReport::Exited {
            code: x.code,
            signal: x.signal,
        },
        None => return Err(Malformed::one("report_serving.report: required")),
    })
}

pub(super) fn placement(p: &pb::ServingPlacement) -> ServingPlacement {
    ServingPlacement {
        index: p.index,
        node: p.node.clone(),
        gpus: p.gpus.clone(),
        port: p.port,
    }
}

pub(super) fn event_to_pb(e: &DeploymentEvent) -> Payload {
    match e {
        DeploymentEvent::Applied { doc } => Payload::DeploymentApplied(pb::DeploymentApplied {
            spec_json: doc.to_json(),
        }),
        DeploymentEvent::RevisionCreated {
            revision,
            model_version,
            model_uri,
            reason,
        } => Payload::DeploymentRevisionCreated(pb::DeploymentRevisionCreated {
            revision: *revision,
            model_version: *model_version,
            model_uri: model_uri.clone(),
            reason: reason.clone(),
        }),
        DeploymentEvent::Routed { port, nodes } => {
            Payload::DeploymentRouted(pb::DeploymentRouted {
                port: *port,
                nodes: nodes.clone(),
            })
        }
        DeploymentEvent::ReplicasPlaced {
            revision,
            placements,
        } => Payload::DeploymentReplicasPlaced(pb::DeploymentReplicasPlaced {
            revision: *revision,
            placements: placements
                .iter()
                .map(|p| pb::ServingPlacement {
                    index: p.index,
                    node: p.node.clone(),
                    gpus: p.gpus.clone(),
                    port: p.port,
                })
                .collect(),
        }),
        DeploymentEvent::ReplicaStarted {
            revision,
            index,
            attempt,
            pid,
        } => Payload::DeploymentReplicaStarted(pb::DeploymentReplicaStarted {
            revision: *revision,
            index: *index,
            attempt: *attempt,
            pid: *pid,
        }),
        DeploymentEvent::ReplicaReady { revision, index } => {
            Payload::DeploymentReplicaReady(pb::DeploymentReplicaReady {
                revision: *revision,
                index: *index,
            })
        }
        DeploymentEvent::ReplicaNotReady {
            revision,
            index,
            reason,
        } => Payload::DeploymentReplicaNotReady(pb::DeploymentReplicaNotReady {
            revision: *revision,
            index: *index,
            reason: reason.clone(),
        }),
        DeploymentEvent::ReplicaRestarting {
            revision,
            index,
            attempt,
            reason,
        } => Payload::DeploymentReplicaRestarting(pb::DeploymentReplicaRestarting {
            revision: *revision,
            index: *index,
            attempt: *attempt,
            reason: reason.clone(),
        }),
        DeploymentEvent::ReplicaDoomed {
            revision,
            index,
            reason,
        } => Payload::DeploymentReplicaDoomed(pb::DeploymentReplicaDoomed {
            revision: *revision,
            index: *index,
            reason: reason.clone(),
        }),
        DeploymentEvent::ReplicasRemoved {
            revision,
            indexes,
            reason,
        } => Payload::DeploymentReplicasRemoved(pb::DeploymentReplicasRemoved {
            revision: *revision,
            indexes: indexes.clone(),
            reason: reason.clone(),
        }),
        DeploymentEvent::TrafficShifted { weights, reason } => {
            Payload::DeploymentTrafficShifted(pb::DeploymentTrafficShifted {
                weights: weights.clone(),
                reason: reason.clone(),
            })
        }
        DeploymentEvent::CanaryStep { step } => {
            Payload::DeploymentCanaryStep(pb::DeploymentCanaryStep { step: *step })
        }
        DeploymentEvent::RolloutCompleted { revision } => {
            Payload::DeploymentRolloutCompleted(pb::DeploymentRolloutCompleted {
                revision: *revision,
            })
        }
        DeploymentEvent::RollbackStarted { to, reason } => {
            Payload::DeploymentRollbackStarted(pb::DeploymentRollbackStarted {
                to: *to,
                reason: reason.clone(),
            })
        }
        DeploymentEvent::Promoted => Payload::DeploymentPromoted(pb::DeploymentPromoted {}),
        DeploymentEvent::Paused { reason } => Payload::DeploymentPaused(pb::DeploymentPaused {
            reason: reason.clone(),
        }),
        DeploymentEvent::Resumed => Payload::DeploymentResumed(pb::DeploymentResumed {}),
        DeploymentEvent::Waiting { reason } => Payload::DeploymentWaiting(pb::DeploymentWaiting {
            reason: reason.clone(),
        }),
        DeploymentEvent::Scaled {
            replicas,
            reason,
            load,
        } => Payload::DeploymentScaled(pb::DeploymentScaled {
            replicas: *replicas,
            reason: reason.clone(),
            load: load.map(load_to_pb),
        }),
        DeploymentEvent::Deleted => Payload::DeploymentDeleted(pb::DeploymentDeleted {}),
    }
}

fn load_to_pb(l: ScaleLoad) -> pb::ScaleLoad {
    pb::ScaleLoad {
        in_flight_milli: l.in_flight_milli,
        ready: l.ready,
        target_in_flight: l.target_in_flight,
    }
}

/// The autoscaler's figures, from protobuf.
pub fn load_from_pb(l: &pb::ScaleLoad) -> ScaleLoad {
    ScaleLoad {
        in_flight_milli: l.in_flight_milli,
        ready: l.ready,
        target_in_flight: l.target_in_flight,
    }
}

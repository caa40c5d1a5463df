//! Model values: stages, statuses, lineage, what a run wrote.

use std::collections::BTreeSet;

use cairn_domain::model::{Held, Lineage, RunOutputs, Stage, VersionStatus};
use cairn_proto as pb;

use super::{FromPb, Malformed, ToPb};

impl ToPb for Stage {
    type Pb = pb::ModelStage;
    fn to_pb(&self) -> pb::ModelStage {
        match self {
            Stage::None => pb::ModelStage::None,
            Stage::Staging => pb::ModelStage::Staging,
            Stage::Production => pb::ModelStage::Production,
            Stage::Archived => pb::ModelStage::Archived,
        }
    }
}

impl FromPb for Stage {
    type Pb = pb::ModelStage;
    fn from_pb(s: &pb::ModelStage) -> Result<Self, Malformed> {
        Ok(match s {
            pb::ModelStage::None => Stage::None,
            pb::ModelStage::Staging => Stage::Staging,
            pb::ModelStage::Production => Stage::Production,
            pb::ModelStage::Archived => Stage::Archived,
        })
    }
}

/// A stage field (an enum's number on the wire), or an error naming the field.
pub(super) fn stage(v: i32, field: &str) -> Result<Stage, Malformed> {
    match pb::ModelStage::try_from(v) {
        Ok(s) => Stage::from_pb(&s),
        Err(_) => Err(Malformed::one(format!("{field}: unknown stage {v}"))),
    }
}

impl ToPb for VersionStatus {
    type Pb = pb::ModelVersionStatus;
    fn to_pb(&self) -> pb::ModelVersionStatus {
        match self {
            VersionStatus::Ready => pb::ModelVersionStatus::Ready,
            VersionStatus::Pending => pb::ModelVersionStatus::Pending,
            VersionStatus::Failed => pb::ModelVersionStatus::Failed,
        }
    }
}

/// A status field, or an error naming the field.
pub(super) fn status(v: i32, field: &str) -> Result<VersionStatus, Malformed> {
    match pb::ModelVersionStatus::try_from(v) {
        Ok(pb::ModelVersionStatus::Ready) => Ok(VersionStatus::Ready),
        Ok(pb::ModelVersionStatus::Pending) => Ok(VersionStatus::Pending),
        Ok(pb::ModelVersionStatus::Failed) => Ok(VersionStatus::Failed),
        Err(_) => Err(Malformed::one(format!("{field}: unknown status {v}"))),
    }
}

impl ToPb for Lineage {
    type Pb = pb::ModelLineage;
    fn to_pb(&self) -> pb::ModelLineage {
        pb::ModelLineage {
            job: self.job.clone(),
            nodes: self.nodes.clone(),
            gpus: self.gpus.clone(),
            code: self.code.clone(),
        }
    }
}

impl FromPb for Lineage {
    type Pb = pb::ModelLineage;
    fn from_pb(l: &pb::ModelLineage) -> Result<Self, Malformed> {
        Ok(Lineage {
            job: l.job.clone(),
            nodes: l.nodes.clone(),
            gpus: l.gpus.clone(),
            code: l.code.clone(),
        })
    }
}

impl ToPb for RunOutputs {
    type Pb = pb::RunOutputs;
    fn to_pb(&self) -> pb::RunOutputs {
        pb::RunOutputs {
            metrics: self.metrics.clone(),
            params: self.params.clone(),
        }
    }
}

impl FromPb for RunOutputs {
    type Pb = pb::RunOutputs;
    fn from_pb(o: &pb::RunOutputs) -> Result<Self, Malformed> {
        Ok(RunOutputs {
            metrics: o.metrics.clone(),
            params: o.params.clone(),
        })
    }
}

/// Optional outputs (absent: none).
pub(super) fn outputs(o: &Option<pb::RunOutputs>) -> RunOutputs {
    o.as_ref()
        .map(|o| RunOutputs {
            metrics: o.metrics.clone(),
            params: o.params.clone(),
        })
        .unwrap_or_default()
}

/// Outputs on the wire: absent when empty.
pub(super) fn outputs_to_pb(o: &RunOutputs) -> Option<pb::RunOutputs> {
    (!o.is_empty()).then(|| o.to_pb())
}

/// A protection: the stage or alias it guards, and who may move it.
pub fn protection(target: &Held, allowed: &BTreeSet<String>) -> pb::ModelProtection {
    use pb::model_protection::Target;
    pb::ModelProtection {
        target: Some(match target {
            Held::Stage(s) => Target::Stage(s.to_pb() as i32),
            Held::Alias(a) => Target::Alias(a.clone()),
        }),
        allowed: allowed.iter().cloned().collect(),
    }
}

/// A protection field, or an error naming it.
pub(super) fn protected(
    p: &Option<pb::ModelProtection>,
    field: &str,
) -> Result<(Held, BTreeSet<String>), Malformed> {
    use pb::model_protection::Target;
    let p = p
        .as_ref()
        .ok_or_else(|| Malformed::one(format!("{field}: required")))?;
    let target = match &p.target {
        Some(Target::Stage(s)) => Held::Stage(stage(*s, &format!("{field}.stage"))?),
        Some(Target::Alias(a)) => Held::Alias(a.clone()),
        None => return Err(Malformed::one(format!("{field}: a stage or an alias"))),
    };
    Ok((target, p.allowed.iter().cloned().collect()))
}

//! `cairn queue`: job queues, their GPU quotas and what they hold.

use cairn_proto as pb;
use clap::Subcommand;
use pb::command::Body;

use crate::ctx::{Ctx, ReadArgs};
use crate::output::{emit, table};

#[derive(Subcommand)]
pub enum QueueCmd {
    /// Queues: GPU quota, GPUs in use, jobs waiting and active.
    List {
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Cap the GPUs a queue's placed jobs may hold.
    Quota {
        queue: String,
        #[arg(
            long,
            conflicts_with = "unlimited",
            required_unless_present = "unlimited"
        )]
        gpus: Option<u32>,
        /// Remove the queue's quota.
        #[arg(long)]
        unlimited: bool,
    },
}

pub async fn run(ctx: &mut Ctx, c: QueueCmd) -> anyhow::Result<()> {
    match c {
        QueueCmd::List { read } => {
            let consistency = read.consistency();
            let r =
                ctx.cluster
                    .call(|mut c| async move {
                        c.list_queues(pb::ListQueuesRequest { consistency }).await
                    })
                    .await?;
            emit(ctx.format, &r.queues, || {
                let mut t = table(&["QUEUE", "GPU QUOTA", "GPUS IN USE", "QUEUED", "ACTIVE"]);
                for q in &r.queues {
                    t.add_row(vec![
                        q.name.clone(),
                        q.quota_gpus.map_or("-".into(), |g| g.to_string()),
                        q.used_gpus.to_string(),
                        q.queued_jobs.to_string(),
                        q.active_jobs.to_string(),
                    ]);
                }
                t
            })
        }
        QueueCmd::Quota {
            queue,
            gpus,
            unlimited,
        } => {
            let gpus = if unlimited { None } else { gpus };
            let body = Body::SetQueueQuota(pb::SetQueueQuota { queue, gpus });
            ctx.submit_and_print(body, None).await
        }
    }
}

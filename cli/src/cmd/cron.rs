//! `cairn cron`: jobs on a schedule: submit, list, inspect their runs, delete.

use anyhow::bail;
use cairn_proto as pb;
use clap::Subcommand;
use pb::command::Body;

use crate::client::Cluster;
use crate::ctx::{document, Ctx, ReadArgs};
use crate::output::{emit, table, time, Format};

#[derive(Subcommand)]
pub enum CronCmd {
    /// Create a cron, or replace its spec (YAML or JSON; `-` reads stdin).
    Submit {
        #[arg(long, short = 'f')]
        file: String,
    },
    /// Crons with their schedule, last and next run.
    List {
        #[command(flatten)]
        read: ReadArgs,
    },
    /// One cron and its recent runs.
    Get {
        name: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    Delete {
        name: String,
    },
}

async fn crons(
    cluster: &mut Cluster,
    name: &str,
    read: &ReadArgs,
) -> anyhow::Result<Vec<pb::CronView>> {
    let req = pb::ListCronsRequest {
        name: name.to_string(),
        consistency: read.consistency(),
    };
    Ok(cluster
        .call(|mut c| {
            let req = req.clone();
            async move { c.list_crons(req).await }
        })
        .await?
        .crons)
}

pub async fn run(ctx: &mut Ctx, c: CronCmd) -> anyhow::Result<()> {
    let row = |c: &pb::CronView| {
        vec![
            c.name.clone(),
            c.schedule.clone(),
            c.concurrency_policy.clone(),
            if c.suspend { "yes" } else { "" }.to_string(),
            time(c.last_scheduled_ms),
            time(c.next_ms),
            c.runs.len().to_string(),
        ]
    };
    let header = [
        "NAME",
        "SCHEDULE",
        "CONCURRENCY",
        "SUSPENDED",
        "LAST",
        "NEXT",
        "RUNS",
    ];
    match c {
        CronCmd::Submit { file } => {
            let spec_json = document(&file)?;
            ctx.submit_and_print(Body::SubmitCron(pb::SubmitCron { spec_json }), None)
                .await
        }
        CronCmd::List { read } => {
            let all = crons(&mut ctx.cluster, "", &read).await?;
            emit(ctx.format, &all, || {
                let mut t = table(&header);
                for c in &all {
                    t.add_row(row(c));
                }
                t
            })
        }
        CronCmd::Get { name, read } => {
            let all = crons(&mut ctx.cluster, &name, &read).await?;
            let Some(c) = all.first() else {
                bail!("cron/{name} not found");
            };
            emit(ctx.format, c, || {
                let mut t = table(&["RUN", "SCHEDULED FOR"]);
                for r in &c.runs {
                    t.add_row(vec![r.job.clone(), time(r.scheduled_ms)]);
                }
                t
            })?;
            if ctx.format == Format::Table {
                let mut t = table(&header);
                t.add_row(row(c));
                println!("{t}");
            }
            Ok(())
        }
        CronCmd::Delete { name } => {
            ctx.submit_and_print(Body::DeleteCron(pb::DeleteCron { name }), None)
                .await
        }
    }
}

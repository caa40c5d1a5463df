//! `cairn ns` (alias `namespace`): create, read, label and delete namespaces.

use std::collections::BTreeMap;

use cairn_proto as pb;
use clap::Subcommand;
use pb::command::Body;

use crate::ctx::{parse_label, parse_labels, Ctx, ReadArgs};
use crate::output::emit;
use crate::views::{entities_table, EntityView};

#[derive(Subcommand)]
pub enum NsCmd {
    Create {
        name: String,
        /// Label `key=value` (repeatable).
        #[arg(long = "label", short = 'l')]
        labels: Vec<String>,
    },
    Get {
        name: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    List {
        /// Include deleted namespaces.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Set (`key=value`) or remove (`key-`) labels.
    Label {
        name: String,
        changes: Vec<String>,
        /// Replace all labels with the given ones.
        #[arg(long)]
        replace: bool,
        /// Fail unless the namespace is at this revision.
        #[arg(long)]
        expect_revision: Option<u64>,
    },
    Delete {
        name: String,
        #[arg(long)]
        expect_revision: Option<u64>,
    },
}

pub async fn run(ctx: &mut Ctx, c: NsCmd) -> anyhow::Result<()> {
    match c {
        NsCmd::Create { name, labels } => {
            let labels = parse_labels(&labels)?;
            ctx.submit_and_print(
                Body::CreateNamespace(pb::CreateNamespace { name, labels }),
                None,
            )
            .await
        }
        NsCmd::Get { name, read } => {
            ctx.print_entity(
                pb::EntityRef {
                    kind: "namespace".into(),
                    name,
                },
                &read,
            )
            .await
        }
        NsCmd::List { all, read } => {
            let req = pb::ListEntitiesRequest {
                kind: "namespace".into(),
                include_deleted: all,
                consistency: read.consistency(),
            };
            let r = ctx
                .cluster
                .call(|mut c| {
                    let req = req.clone();
                    async move { c.list_entities(req).await }
                })
                .await?;
            let views: Vec<EntityView> = r.entities.iter().map(EntityView::from).collect();
            emit(ctx.format, &views, || entities_table(&views))
        }
        NsCmd::Label {
            name,
            changes,
            replace,
            expect_revision,
        } => {
            let mut set = BTreeMap::new();
            let mut remove = Vec::new();
            for c in &changes {
                if let Some(k) = c.strip_suffix('-').filter(|_| !c.contains('=')) {
                    remove.push(k.to_string());
                } else {
                    let (k, v) = parse_label(c)?;
                    set.insert(k, v);
                }
            }
            let body = Body::SetNamespaceLabels(pb::SetNamespaceLabels {
                name,
                set,
                remove,
                replace,
            });
            ctx.submit_and_print(body, expect_revision).await
        }
        NsCmd::Delete {
            name,
            expect_revision,
        } => {
            ctx.submit_and_print(
                Body::DeleteNamespace(pb::DeleteNamespace { name }),
                expect_revision,
            )
            .await
        }
    }
}

//! `cairn note`: operator notes on any entity.

use cairn_proto as pb;
use clap::Subcommand;
use pb::command::Body;

use crate::ctx::{parse_entity, Ctx};

#[derive(Subcommand)]
pub enum NoteCmd {
    /// Add a note to an entity: `cairn note add namespace/research "quota raised"`.
    Add {
        entity: String,
        text: String,
        #[arg(long)]
        expect_revision: Option<u64>,
    },
}

pub async fn run(ctx: &mut Ctx, c: NoteCmd) -> anyhow::Result<()> {
    match c {
        NoteCmd::Add {
            entity,
            text,
            expect_revision,
        } => {
            let entity = parse_entity(&entity, true)?;
            ctx.submit_and_print(
                Body::AddNote(pb::AddNote {
                    entity: Some(entity),
                    text,
                }),
                expect_revision,
            )
            .await
        }
    }
}

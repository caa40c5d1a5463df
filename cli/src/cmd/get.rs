//! `cairn get kind/name`: read any one entity (its revision, labels and notes).

use crate::ctx::{parse_entity, Ctx, ReadArgs};

// The help text is on `Command::Get` (a doc comment here would replace it).
#[derive(clap::Args)]
pub struct GetArgs {
    entity: String,
    #[command(flatten)]
    read: ReadArgs,
}

pub async fn run(ctx: &mut Ctx, args: GetArgs) -> anyhow::Result<()> {
    let entity = parse_entity(&args.entity, true)?;
    ctx.print_entity(entity, &args.read).await
}

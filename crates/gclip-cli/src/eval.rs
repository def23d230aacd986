#[derive(clap::Subcommand)]
pub enum Command {
    /// Score a TREC run file against a qrels file.
    Trec(TrecArgs),
}

#[derive(clap::Args)]
pub struct TrecArgs {}

pub fn run(_cmd: Command) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

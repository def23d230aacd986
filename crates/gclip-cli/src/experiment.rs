#[derive(clap::Subcommand)]
pub enum Command {
    /// Train CLIP-style and GCL models on the same generated shop and compare them.
    GclVsClip(GclVsClipArgs),
}

#[derive(clap::Args)]
pub struct GclVsClipArgs {}

pub fn run(_cmd: Command) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

//! `gclip bench`: items/s of a random-weight model of a named architecture, per tower and batch.

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub bench: gclip_engine::bench::BenchArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    gclip_engine::bench::run(&args.bench)?;
    Ok(())
}

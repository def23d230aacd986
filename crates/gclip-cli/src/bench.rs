//! `gclip bench`: items/s of a random-weight model of a named architecture, per tower and batch.

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub bench: gclip::engine::bench::BenchArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    gclip::engine::bench::run(&args.bench)?;
    Ok(())
}

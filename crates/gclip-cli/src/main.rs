//! `gclip`: a thin command-line front over the gclip library crates.
//! Each subcommand lives in its own module with an `Args` struct and a `run`.

mod bench;
mod classify;
mod common;
mod convert;
mod demo;
mod embed;
mod eval;
mod experiment;
mod index;
mod preprocess;
mod serve;
mod similarity;
mod synth;
mod tokenize;
mod train;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "gclip",
    version,
    about = "CLIP and GCL embeddings: run, train, evaluate, search"
)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `gclip=debug`.
    #[arg(long, global = true, env = "GCLIP_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Tour of gclip on a generated shop: search, similarity, zero-shot; writes an HTML page.
    Demo(demo::Args),
    /// Embed texts and images (JSONL, NPY or safetensors).
    Embed(embed::Args),
    /// Cosine similarity between texts and/or images.
    Similarity(similarity::Args),
    /// Zero-shot classification of images against labels.
    Classify(classify::Args),
    /// Tokenize texts with the CLIP BPE tokenizer and print ids as JSON.
    Tokenize(tokenize::Args),
    /// Preprocess images into the model's input tensor and write it as NPY.
    Preprocess(preprocess::Args),
    /// Convert a checkpoint to the open_clip or Hugging Face layout.
    Convert(convert::Args),
    /// Evaluate retrieval, TREC runs, zero-shot classification or pair recall.
    #[command(subcommand)]
    Eval(eval::Command),
    /// Reproducible experiments (GCL versus CLIP on the generated shop).
    #[command(subcommand)]
    Experiment(experiment::Command),
    /// Generate a procedural product catalogue with images, queries and relevance.
    Synth(synth::Args),
    /// Train a CLIP or GCL model.
    Train(train::Args),
    /// Measure inference throughput of a random-weight model.
    Bench(bench::Args),
    /// Durable multimodal search indexes (Marqo-style) and the ANN benchmark.
    Index(index::Args),
    /// Serve the indexes over HTTP with Marqo's API (the marqo Python client works unchanged).
    Serve(serve::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log)?)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Embed(a) => embed::run(a),
        Command::Similarity(a) => similarity::run(a),
        Command::Classify(a) => classify::run(a),
        Command::Tokenize(a) => tokenize::run(a),
        Command::Preprocess(a) => preprocess::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Eval(c) => eval::run(c),
        Command::Experiment(c) => experiment::run(c),
        Command::Synth(a) => synth::run(a),
        Command::Train(a) => train::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Index(a) => index::run(a),
        Command::Serve(a) => serve::run(a),
    }
}

//! TREC run and qrels files.
//!
//! Run lines: `qid Q0 docno rank score tag` (6 whitespace-separated fields; the rank
//! is ignored, as trec_eval does). Qrels lines: `qid iter docno relevance`.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use crate::error::{io_err, EvalError, Result};
use crate::metrics::{Qrels, Run};

fn lines(path: &Path) -> Result<impl Iterator<Item = (usize, std::io::Result<String>)>> {
    let f = File::open(path).map_err(io_err(path))?;
    Ok(BufReader::new(f)
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l)))
}

fn format_err(path: &Path, line: usize, msg: impl Into<String>) -> EvalError {
    EvalError::TrecFormat {
        path: path.to_owned(),
        line,
        msg: msg.into(),
    }
}

/// Reads a TREC run file.
pub fn read_run(path: &Path) -> Result<Run> {
    let mut run = Run::new();
    for (no, line) in lines(path)? {
        let line = line.map_err(io_err(path))?;
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() != 6 {
            return Err(format_err(
                path,
                no,
                format!(
                    "expected 6 fields `qid Q0 docno rank score tag`, found {}",
                    f.len()
                ),
            ));
        }
        let score: f64 = f[4]
            .parse()
            .map_err(|_| format_err(path, no, format!("score {:?} is not a number", f[4])))?;
        if score.is_nan() {
            return Err(format_err(path, no, "score is NaN"));
        }
        run.push(f[0], f[2], score);
    }
    Ok(run)
}

/// Reads a TREC qrels file (relevance values are integers, possibly negative).
pub fn read_qrels(path: &Path) -> Result<Qrels> {
    let mut qrels = Qrels::new();
    for (no, line) in lines(path)? {
        let line = line.map_err(io_err(path))?;
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() != 4 {
            return Err(format_err(
                path,
                no,
                format!(
                    "expected 4 fields `qid iter docno relevance`, found {}",
                    f.len()
                ),
            ));
        }
        let rel: i64 = f[3]
            .parse()
            .map_err(|_| format_err(path, no, format!("relevance {:?} is not an integer", f[3])))?;
        qrels
            .insert(f[0], f[2], rel)
            .map_err(|e| format_err(path, no, e.to_string()))?;
    }
    Ok(qrels)
}

fn check_token(what: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.chars().any(char::is_whitespace) {
        return Err(EvalError::Config(format!(
            "{what} {s:?} cannot be written to a TREC file (empty or contains whitespace)"
        )));
    }
    Ok(())
}

/// Writes a run in TREC format, ranked as trec_eval would rank it, with tag `tag`.
pub fn write_run(path: &Path, run: &Run, tag: &str) -> Result<()> {
    let mut w = BufWriter::new(File::create(path).map_err(io_err(path))?);
    for q in run.queries() {
        check_token("query id", q)?;
        let mut docs: Vec<&(String, f64)> = run.get(q).unwrap_or_default().iter().collect();
        docs.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        for (rank, (d, s)) in docs.into_iter().enumerate() {
            check_token("document id", d)?;
            writeln!(w, "{q} Q0 {d} {} {s:?} {tag}", rank + 1).map_err(io_err(path))?;
        }
    }
    w.flush().map_err(io_err(path))
}

/// Writes qrels in TREC format (documents of a query in byte order).
pub fn write_qrels(path: &Path, qrels: &Qrels) -> Result<()> {
    let mut w = BufWriter::new(File::create(path).map_err(io_err(path))?);
    for q in qrels.queries() {
        check_token("query id", q)?;
        let mut docs: Vec<(&String, &i64)> = qrels.get(q).into_iter().flatten().collect();
        docs.sort();
        for (d, r) in docs {
            check_token("document id", d)?;
            writeln!(w, "{q} 0 {d} {r}").map_err(io_err(path))?;
        }
    }
    w.flush().map_err(io_err(path))
}

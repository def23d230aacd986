//! Running the built `gclip` binary from integration tests.

use std::process::{Command, Output, Stdio};

/// Runs `gclip ARGS` with no `$GCLIP_MODEL` and no stdin.
pub fn gclip(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gclip"))
        .args(args)
        .env_remove("GCLIP_MODEL")
        .stdin(Stdio::null())
        .output()
        .expect("running gclip")
}

/// Stdout of a run that must have succeeded (stderr shown otherwise).
pub fn ok_stdout(out: Output) -> String {
    assert!(
        out.status.success(),
        "gclip failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

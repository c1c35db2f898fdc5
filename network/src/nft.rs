//! Running `nft`: one JSON batch in, one kernel transaction out. Koala speaks to nftables
//! only through the JSON interface (`nft -j -f -`), so that a ruleset is built as data with
//! serde_json, never by pasting strings into nft's own language, and so that a whole batch is
//! committed or refused as one.

use std::io::{self, Write};
use std::process::{Command, ExitStatus, Stdio};

use serde_json::Value;

/// Where `nft` runs: the current network namespace (the CC's own), or a named one (`ip netns
/// exec NAME nft ...`), so that tests and benchmarks apply real rulesets inside namespaces they
/// create without touching the host's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nft {
    netns: Option<String>,
}

/// Why a batch did not reach the kernel.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The program could not be started.
    #[error("nft could not be started (is the nftables package installed?)")]
    Spawn(#[source] io::Error),
    /// The batch could not be handed to nft, and nft still said it succeeded.
    #[error("the batch could not be written to nft")]
    Write(#[source] io::Error),
    /// What nft printed is not JSON.
    #[error("nft printed what is not JSON")]
    Output(#[source] serde_json::Error),
    /// nft (or `ip netns exec`) refused: the kernel kept the ruleset it had.
    #[error("nft failed with {status}: {stderr}")]
    Failed {
        /// How it exited.
        status: ExitStatus,
        /// What it said.
        stderr: String,
    },
}

impl Nft {
    /// `nft` in this process's own network namespace: what the CC runs.
    pub fn here() -> Nft {
        Nft { netns: None }
    }

    /// `nft` inside the named network namespace (one of `ip netns list`).
    pub fn in_netns(name: impl Into<String>) -> Nft {
        Nft {
            netns: Some(name.into()),
        }
    }

    /// The namespace it runs in, `None` for the current one.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// What `nft -j list ARGS` prints (`["set", "bridge", "koala", "guests_seen"]`), parsed.
    /// Blocks until nft exits.
    pub fn list(&self, args: &[&str]) -> Result<Value, NftError> {
        let output = self
            .command()
            .args(["-j", "list"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(NftError::Spawn)?;
        if !output.status.success() {
            return Err(NftError::Failed {
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        serde_json::from_slice(&output.stdout).map_err(NftError::Output)
    }

    /// `nft`, or `ip netns exec NAME nft`.
    fn command(&self) -> Command {
        match &self.netns {
            None => Command::new("nft"),
            Some(name) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", name, "nft"]);
                c
            }
        }
    }

    /// Commits `batch` (`{"nftables": [...]}`) as one transaction: every command in it takes
    /// effect, or none does. Blocks until nft exits (call it from a blocking thread in async
    /// code).
    pub fn run(&self, batch: &Value) -> Result<(), NftError> {
        let mut child = self
            .command()
            .args(["-j", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(NftError::Spawn)?;
        // nft reads the whole batch before it writes anything, so writing first and reading
        // stderr after cannot deadlock. A failed write (nft gave up early) is reported only
        // if nft itself did not explain why.
        let written = match child.stdin.take() {
            Some(mut stdin) => stdin.write_all(batch.to_string().as_bytes()),
            None => Err(io::Error::other("nft's standard input was not piped")),
        };
        let output = child.wait_with_output().map_err(NftError::Spawn)?;
        if !output.status.success() {
            return Err(NftError::Failed {
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        written.map_err(NftError::Write)
    }
}

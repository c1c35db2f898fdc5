//! The crate's one error type.

use std::path::PathBuf;
use std::process::ExitStatus;

/// Why a compute operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// libvirt refused or failed a call.
    #[error("libvirt could not {action}")]
    Libvirt {
        /// What was asked of libvirt, e.g. "start domain i-12345678".
        action: String,
        /// libvirt's own error, with its code and message.
        #[source]
        source: virt::error::Error,
    },
    /// A file operation failed.
    #[error("could not {action} {}", path.display())]
    Io {
        /// What was being done to the file.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// libvirt knows no domain of this name.
    #[error("there is no domain {0}")]
    NoDomain(String),
    /// QEMU's monitor refused a command or answered what the node did not expect.
    #[error("QEMU's monitor of domain {domain} could not {action}: {message}")]
    Monitor {
        /// The domain.
        domain: String,
        /// What was asked, e.g. "open the cached image".
        action: &'static str,
        /// QEMU's error, or what was wrong with its answer.
        message: String,
    },
    /// An external program (genisoimage) could not run or exited with a failure.
    #[error("{program} failed ({status}): {stderr}")]
    Command {
        /// The program's name.
        program: &'static str,
        /// How it ended.
        status: ExitStatus,
        /// What it printed on its standard error.
        stderr: String,
    },
    /// A program the node needs cannot be run (not installed, or not on `PATH`).
    #[error("cannot run {program}, which the node needs (apt-get install {package})")]
    MissingProgram {
        /// The program's name.
        program: &'static str,
        /// The Debian package that installs it.
        package: &'static str,
        /// Why it could not be started.
        #[source]
        source: std::io::Error,
    },
    /// The image cache failed (serving an image being filled to QEMU).
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
    /// QEMU's user is not in the password database.
    #[error("there is no user {0} on this host for QEMU to run as")]
    NoSuchUser(String),
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }

    pub(crate) fn libvirt(action: impl Into<String>) -> impl FnOnce(virt::error::Error) -> Self {
        let action = action.into();
        move |source| Error::Libvirt { action, source }
    }
}

//! Shared plumbing for Koala's binaries.

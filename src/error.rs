//! What kind of failure an error is, for callers that act on it: the command line picks its
//! exit status, the Python layer its exception class. Errors stay [`anyhow::Error`]s with
//! their messages; a marker somewhere in the chain says the kind.

use std::fmt;

/// A setting or argument with a value it cannot take (the message names it).
#[derive(Debug)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

/// The caller asked the work to stop ([`crate::fit::FitProgress::cancelled`] and the other
/// observers' `cancelled`). What was saved before the stop is kept; `--resume` goes on from it.
#[derive(Debug)]
pub struct Interrupted;

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("interrupted (what was saved is kept; resume goes on from it)")
    }
}

impl std::error::Error for Interrupted {}

/// Some cells of a run over many cells failed after all the others were done (the message
/// gives the counts). The command line exits with [`EXIT_SOME_FAILED`].
#[derive(Debug)]
pub struct SomeFailed {
    /// Cells that failed.
    pub failed: usize,
    /// Cells in the run.
    pub total: usize,
}

impl fmt::Display for SomeFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} cells failed (the others are done; reasons above)",
            self.failed, self.total
        )
    }
}

impl std::error::Error for SomeFailed {}

/// Exit status of a command over many cells when some failed and the others are done.
pub const EXIT_SOME_FAILED: i32 = 3;

/// An [`Invalid`] error with this message.
pub fn invalid(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Invalid(msg.into()))
}

/// The kinds of failure callers tell apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A bad setting or argument ([`Invalid`]).
    InvalidValue,
    /// A file or folder that does not exist.
    NotFound,
    /// Another input / output failure.
    Io,
    /// The caller stopped the work ([`Interrupted`]).
    Interrupted,
    /// Some cells failed ([`SomeFailed`]).
    SomeFailed,
    /// Anything else.
    Other,
}

/// The kind of `e`: the first marker in its chain, outermost first.
pub fn kind(e: &anyhow::Error) -> ErrorKind {
    for cause in e.chain() {
        if cause.is::<Interrupted>() {
            return ErrorKind::Interrupted;
        }
        if cause.is::<Invalid>() {
            return ErrorKind::InvalidValue;
        }
        if cause.is::<SomeFailed>() {
            return ErrorKind::SomeFailed;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::NotFound => ErrorKind::NotFound,
                _ => ErrorKind::Io,
            };
        }
    }
    ErrorKind::Other
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn kinds_are_found_through_context() {
        let e = invalid("--bin-size 7: must be 10, 20, 50 or 100").context("fit");
        assert_eq!(kind(&e), ErrorKind::InvalidValue);
        assert_eq!(
            format!("{e:#}"),
            "fit: --bin-size 7: must be 10, 20, 50 or 100"
        );
        let e = std::fs::read("/no/such/file")
            .context("cannot read /no/such/file")
            .unwrap_err();
        assert_eq!(kind(&e), ErrorKind::NotFound);
        assert_eq!(
            kind(&anyhow::Error::new(Interrupted)),
            ErrorKind::Interrupted
        );
        assert_eq!(kind(&anyhow::anyhow!("other")), ErrorKind::Other);
    }
}

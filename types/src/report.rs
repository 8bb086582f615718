//! Printing an error with its chain of causes, once, at the edge (logs, gRPC statuses).
//!
//! Errors keep their cause as `#[source]` and their message says only what failed at their own
//! level; whoever finally shows the error prints the chain: `anyhow`'s `{:#}` in the CLI, or
//! [`Report`] in a log line.

use std::error::Error;
use std::fmt;

/// `outer: cause: root cause`.
pub struct Report<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the marker")]
    struct Outer {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn the_chain_is_printed_once() {
        let e = Outer {
            source: std::io::Error::other("disk on fire"),
        };
        assert_eq!(Report(&e).to_string(), "reading the marker: disk on fire");
    }
}

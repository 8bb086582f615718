//! The server's errors, and the one place they become gRPC statuses.

use datafusion::error::DataFusionError;
use tonic::Status;

/// Longest message sent to a client; the full error is logged.
const MAX_MESSAGE: usize = 2_000;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL text does not parse.
    #[error("SQL syntax error: {0}")]
    Sql(DataFusionError),
    /// Planning or running the query failed.
    #[error("{0}")]
    Query(DataFusionError),
    /// The request is malformed (bad handle, wrong parameters, several statements).
    #[error("{0}")]
    InvalidRequest(String),
    /// The statement is not allowed on this read-only server.
    #[error("{0}")]
    Forbidden(String),
    /// Too many queries at once, and the queue is full too.
    #[error(
        "the server is running its maximum of {running} concurrent queries and {queued} more \
         are waiting; retry shortly"
    )]
    Busy { running: usize, queued: usize },
    /// The query ran longer than the configured timeout.
    #[error("the query exceeded the server's time limit of {0:?} and was stopped")]
    Timeout(std::time::Duration),
    /// The result is larger than the configured limit.
    #[error("the result exceeds the server's limit of {0}; add a LIMIT or aggregate")]
    ResultTooLarge(String),
    /// No or wrong credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// A Flight SQL call this server does not implement.
    #[error("{0}")]
    Unsupported(String),
    /// Arrow encoding or decoding failed.
    #[error("{0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Building a Flight response failed (a server bug).
    #[error("{0}")]
    Flight(#[from] arrow_flight::error::FlightError),
    /// A request is larger than a limit allows (bound parameters, a function's output).
    #[error("{0}")]
    TooLarge(String),
    /// The query was cancelled (by an operator, or because its client went away).
    #[error("{0}")]
    Cancelled(String),
    /// Too many failed sign-ins from one address.
    #[error(
        "too many failed sign-in attempts from this address; retry in {} s",
        .0.as_secs().max(1)
    )]
    TooManyAttempts(std::time::Duration),
    /// The server is stopping and takes no new work.
    #[error("the server is shutting down; retry on another server or after it restarts")]
    ShuttingDown,
    /// A server bug, caught before it could take the process down.
    #[error("{0}")]
    Internal(String),
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let code = match &err {
            Error::Sql(_) | Error::InvalidRequest(_) => tonic::Code::InvalidArgument,
            Error::Query(e) => datafusion_code(e),
            Error::Forbidden(_) => tonic::Code::PermissionDenied,
            Error::Busy { .. } | Error::ResultTooLarge(_) | Error::TooLarge(_) => {
                tonic::Code::ResourceExhausted
            }
            Error::TooManyAttempts(_) => tonic::Code::ResourceExhausted,
            Error::Cancelled(_) => tonic::Code::Cancelled,
            Error::ShuttingDown => tonic::Code::Unavailable,
            Error::Internal(_) => tonic::Code::Internal,
            Error::Timeout(_) => tonic::Code::DeadlineExceeded,
            Error::Unauthenticated(_) => tonic::Code::Unauthenticated,
            Error::Unsupported(_) => tonic::Code::Unimplemented,
            Error::Arrow(_) => tonic::Code::InvalidArgument,
            Error::Flight(_) => tonic::Code::Internal,
        };
        let mut message = err.to_string();
        if code == tonic::Code::Internal || code == tonic::Code::Unavailable {
            tracing::error!(cause = %message, "request failed");
        } else {
            tracing::debug!(?code, cause = %message, "request refused");
        }
        if message.len() > MAX_MESSAGE {
            let mut end = MAX_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push_str(" …");
        }
        Status::new(code, message)
    }
}

/// Classifies a DataFusion error by its root cause.
fn datafusion_code(err: &DataFusionError) -> tonic::Code {
    use tonic::Code;
    match err.find_root() {
        DataFusionError::SQL(..) | DataFusionError::SchemaError(..) => Code::InvalidArgument,
        DataFusionError::Plan(msg) if msg.contains("not found") && msg.contains("table") => {
            Code::NotFound
        }
        DataFusionError::Plan(msg) if msg.contains("is not allowed") => Code::PermissionDenied,
        DataFusionError::Plan(_) | DataFusionError::Configuration(_) => Code::InvalidArgument,
        DataFusionError::NotImplemented(_) => Code::Unimplemented,
        DataFusionError::ResourcesExhausted(_) => Code::ResourceExhausted,
        DataFusionError::ArrowError(e, _) => match e.as_ref() {
            arrow::error::ArrowError::DivideByZero
            | arrow::error::ArrowError::CastError(_)
            | arrow::error::ArrowError::ParseError(_)
            | arrow::error::ArrowError::ComputeError(_)
            | arrow::error::ArrowError::InvalidArgumentError(_)
            | arrow::error::ArrowError::ArithmeticOverflow(_) => Code::InvalidArgument,
            arrow::error::ArrowError::MemoryError(_) => Code::ResourceExhausted,
            _ => Code::Internal,
        },
        DataFusionError::Execution(msg)
            if msg.contains("Cast error") || msg.contains("Divide by zero") =>
        {
            Code::InvalidArgument
        }
        // The spill limit (--query-spill-limit) is reported as an I/O error; its message is the
        // only way to tell it apart.
        DataFusionError::IoError(e) if e.to_string().contains("exceeded the allowable limit") => {
            Code::ResourceExhausted
        }
        DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => Code::Unavailable,
        _ => Code::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(err: Error) -> tonic::Code {
        Status::from(err).code()
    }

    #[test]
    fn codes() {
        use tonic::Code;
        assert_eq!(code(Error::Forbidden("x".into())), Code::PermissionDenied);
        assert_eq!(
            code(Error::Busy {
                running: 4,
                queued: 0
            }),
            Code::ResourceExhausted
        );
        assert_eq!(
            code(Error::Timeout(std::time::Duration::from_secs(1))),
            Code::DeadlineExceeded
        );
        assert_eq!(
            code(Error::Query(DataFusionError::Plan(
                "table 'shop.stage.nope' not found".into()
            ))),
            Code::NotFound
        );
        assert_eq!(
            code(Error::Query(DataFusionError::Plan(
                "Invalid function 'foo'".into()
            ))),
            Code::InvalidArgument
        );
        assert_eq!(
            code(Error::Query(DataFusionError::ResourcesExhausted(
                "pool".into()
            ))),
            Code::ResourceExhausted
        );
        let nested = DataFusionError::Context(
            "while planning".into(),
            Box::new(DataFusionError::ResourcesExhausted("pool".into())),
        );
        assert_eq!(code(Error::Query(nested)), Code::ResourceExhausted);
    }

    #[test]
    fn long_messages_are_capped_on_a_char_boundary() {
        let status = Status::from(Error::InvalidRequest("é".repeat(5_000)));
        assert!(status.message().len() <= MAX_MESSAGE + 4);
        assert!(status.message().ends_with('…'));
    }
}

//! Errors that cross a process boundary carry a stable [`ErrorCode`]: the
//! runtime sends it in a `Failure` frame and the Node facade exposes it as
//! `err.code`, so callers can branch on it without parsing messages.

use std::fmt;

/// Stable error codes. The numeric value is what travels on the wire; the
/// string form is what users see. Never renumber an existing code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    InvalidParams = 1,
    FunctionNotFound = 2,
    Timeout = 3,
    RuntimeUnavailable = 4,
    Unauthorized = 5,
    PayloadTooLarge = 6,
    QueueFull = 7,
    Protocol = 8,
    Config = 9,
    Internal = 10,
    /// A thing operation's function reported an error.
    FunctionFailed = 11,
    CredentialsUnavailable = 12,
    /// The runtime already serves `connections.max` connections.
    TooManyConnections = 13,
    /// The runtime is stopping: it takes no new calls.
    ShuttingDown = 14,
    /// The gateway a remote invocation is for says it is offline (its retained status).
    GatewayOffline = 15,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::InvalidParams,
        ErrorCode::FunctionNotFound,
        ErrorCode::Timeout,
        ErrorCode::RuntimeUnavailable,
        ErrorCode::Unauthorized,
        ErrorCode::PayloadTooLarge,
        ErrorCode::QueueFull,
        ErrorCode::Protocol,
        ErrorCode::Config,
        ErrorCode::Internal,
        ErrorCode::FunctionFailed,
        ErrorCode::CredentialsUnavailable,
        ErrorCode::TooManyConnections,
        ErrorCode::ShuttingDown,
        ErrorCode::GatewayOffline,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidParams => "ERR_INVALID_PARAMS",
            ErrorCode::FunctionNotFound => "ERR_FUNCTION_NOT_FOUND",
            ErrorCode::Timeout => "ERR_TIMEOUT",
            ErrorCode::RuntimeUnavailable => "ERR_RUNTIME_UNAVAILABLE",
            ErrorCode::Unauthorized => "ERR_UNAUTHORIZED",
            ErrorCode::PayloadTooLarge => "ERR_PAYLOAD_TOO_LARGE",
            ErrorCode::QueueFull => "ERR_QUEUE_FULL",
            ErrorCode::Protocol => "ERR_PROTOCOL",
            ErrorCode::Config => "ERR_CONFIG",
            ErrorCode::Internal => "ERR_INTERNAL",
            ErrorCode::FunctionFailed => "ERR_FUNCTION_FAILED",
            ErrorCode::CredentialsUnavailable => "ERR_CREDENTIALS_UNAVAILABLE",
            ErrorCode::TooManyConnections => "ERR_TOO_MANY_CONNECTIONS",
            ErrorCode::ShuttingDown => "ERR_SHUTTING_DOWN",
            ErrorCode::GatewayOffline => "ERR_GATEWAY_OFFLINE",
        }
    }

    pub fn from_wire(value: u16) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|code| *code as u16 == value)
    }

    /// The code named `name` (`"ERR_TIMEOUT"`), as another gateway reports it.
    pub fn from_name(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|code| code.as_str() == name)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error with a stable code and a message written for the person reading it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Error {
        Error { code, message: message.into() }
    }

    pub fn runtime_unavailable(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::RuntimeUnavailable, message)
    }

    pub fn config(message: impl Into<String>) -> Error {
        Error::new(ErrorCode::Config, message)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

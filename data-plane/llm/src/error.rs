//! Translation errors: a client's request that cannot be expressed in the target format, or an
//! upstream answer that cannot be understood.

use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum TranslateError {
    /// The client's request is invalid or uses something the target provider cannot do (400).
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    /// The upstream answered something that is not valid in its own format (502).
    #[error("{0}")]
    BadUpstream(String),
}

impl TranslateError {
    pub fn invalid(message: impl Into<String>) -> Self {
        TranslateError::InvalidRequest {
            message: message.into(),
            param: None,
        }
    }

    pub fn invalid_param(param: &str, message: impl Into<String>) -> Self {
        TranslateError::InvalidRequest {
            message: message.into(),
            param: Some(param.to_string()),
        }
    }

    pub fn bad_upstream(message: impl Into<String>) -> Self {
        TranslateError::BadUpstream(message.into())
    }
}

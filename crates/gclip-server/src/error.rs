//! Errors as Marqo sends them: `{"message", "code", "type", "link"}` with the matching HTTP
//! status, so the `marqo` client raises the error class its users already catch.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error reply. Built from the index engine's errors (which carry their Marqo code) or
/// from the server's own checks (limits, request shapes, authentication).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} ({status}): {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A body that is JSON but not of the expected shape (Marqo answers 422 here).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable_entity",
            message,
        )
    }

    /// Over one of the server's limits; the message names the limit and its flag.
    pub fn limit(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    fn error_type(&self) -> &'static str {
        match self.status.as_u16() {
            401 | 403 => "unauthorized",
            429 => "too_many_requests",
            s if s >= 500 => "internal",
            _ => "invalid_request",
        }
    }
}

impl From<gclip::index::Error> for ApiError {
    fn from(e: gclip::index::Error) -> Self {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %e, "internal error");
        }
        Self::new(status, e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "message": self.message,
            "code": self.code,
            "type": self.error_type(),
            "link": "",
        });
        if self.status == StatusCode::UNPROCESSABLE_ENTITY {
            body["detail"] = json!([{"msg": self.message}]);
        }
        (self.status, axum::Json(body)).into_response()
    }
}

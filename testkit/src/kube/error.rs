//! The fake API server's failures, answered as `metav1.Status` like the real one's, because
//! kube's client turns exactly that body into `kube::Error::Api` with its code and reason.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, Status, StatusDetails};

/// Why a request failed; the message is the real API server's wording for that case.
#[derive(Debug, thiserror::Error)]
pub(super) enum ApiError {
    /// The named object does not exist (404 `NotFound`).
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        /// The plural resource, e.g. `pods`, as the real message names it.
        resource: &'static str,
        /// The object's name.
        name: String,
    },
    /// An object of that name exists already (409 `AlreadyExists`).
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        /// The plural resource, e.g. `pods`.
        resource: &'static str,
        /// The object's name.
        name: String,
    },
    /// A path (or method on a path) the fake does not serve (404 `NotFound`).
    #[error("the server could not find the requested resource")]
    UnknownPath,
    /// A body or query the fake cannot use (400 `BadRequest`).
    #[error("{0}")]
    BadRequest(String),
    /// A well-formed object the API would reject, e.g. without any name (422 `Invalid`).
    #[error("{0}")]
    Invalid(String),
    /// The test switched errors on, or the server is going away (500 `InternalError`).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn code(&self) -> StatusCode {
        match self {
            ApiError::NotFound { .. } | ApiError::UnknownPath => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists { .. } => StatusCode::CONFLICT,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::UnknownPath => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Invalid(_) => "Invalid",
            ApiError::Internal(_) => "InternalError",
        }
    }

    /// The `details` the real server adds when one named object is concerned.
    fn details(&self) -> Option<StatusDetails> {
        match self {
            ApiError::NotFound { resource, name } | ApiError::AlreadyExists { resource, name } => {
                Some(StatusDetails {
                    name: Some(name.clone()),
                    kind: Some((*resource).to_owned()),
                    ..StatusDetails::default()
                })
            }
            _ => None,
        }
    }

    /// The `Status` object the real API server sends for this error.
    pub(super) fn status(&self) -> Status {
        Status {
            code: Some(i32::from(self.code().as_u16())),
            details: self.details(),
            message: Some(self.to_string()),
            metadata: ListMeta::default(),
            reason: Some(self.reason().to_owned()),
            status: Some("Failure".to_owned()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.code(), Json(self.status())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_serializes_like_kube_apiserver() {
        let error = ApiError::NotFound {
            resource: "pods",
            name: "probe".to_owned(),
        };
        let json = serde_json::to_value(error.status()).expect("a Status serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "pods \"probe\" not found",
                "reason": "NotFound",
                "details": { "name": "probe", "kind": "pods" },
                "code": 404
            })
        );
    }
}

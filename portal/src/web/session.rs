//! The logged-in user of a request.

use crate::auth::{AccessLevel, UserRecord};
use crate::web::{PortalApp, SESSION_COOKIE};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The user behind a request's session cookie; requests without a live session get 401.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// The user as configured.
    pub record: UserRecord,
    /// The session's token (to end it).
    pub token: String,
}

impl CurrentUser {
    /// Whether the user may start things.
    pub fn has_full_control(&self) -> bool {
        self.record.access == AccessLevel::FullControl
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

impl FromRequestParts<Arc<PortalApp>> for CurrentUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<PortalApp>,
    ) -> Result<CurrentUser, Response> {
        let unauthorized = || {
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({"error": "log in first"})),
            )
                .into_response()
        };
        let token = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|h| cookie(h, SESSION_COOKIE))
            .ok_or_else(unauthorized)?;
        let session = app.sessions.lookup(token).ok_or_else(unauthorized)?;
        // The configured record, so a changed access level applies at once.
        let record = app
            .users
            .get(&session.user)
            .ok_or_else(unauthorized)?
            .clone();
        Ok(CurrentUser {
            record,
            token: token.to_owned(),
        })
    }
}

/// A user with Full control: requests of others get 401 (no session) or 403 (Monitor only)
/// before anything reads their body.
#[derive(Debug, Clone)]
pub struct FullControl(pub CurrentUser);

/// The refusal of a Monitor-only user.
pub fn monitor_only() -> Response {
    (
        StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({
            "error": "your access level is Monitor only: you can see everything but start nothing",
            "code": null,
        })),
    )
        .into_response()
}

impl FromRequestParts<Arc<PortalApp>> for FullControl {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<PortalApp>,
    ) -> Result<FullControl, Response> {
        let user = CurrentUser::from_request_parts(parts, app).await?;
        if user.has_full_control() {
            Ok(FullControl(user))
        } else {
            Err(monitor_only())
        }
    }
}

/// The address a request came from (the TCP peer, as the server saw it), when known.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<PeerAddr, Self::Rejection> {
        Ok(PeerAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cookie_among_others() {
        assert_eq!(
            cookie("a=1; bmsfw_session=abc; b=2", SESSION_COOKIE),
            Some("abc")
        );
        assert_eq!(cookie("bmsfw_session=", SESSION_COOKIE), Some(""));
        assert_eq!(cookie("x_bmsfw_session=abc", SESSION_COOKIE), None);
        assert_eq!(cookie("", SESSION_COOKIE), None);
    }
}

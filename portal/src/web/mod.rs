//! The installer's web UI and HTTP API (axum).
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/`, `/app.js`, `/app.css` | the UI: plain HTML, CSS and JS, no build step |
//! | POST | `/api/login`, `/api/logout` | sessions (a `bmsfw_session` cookie) |
//! | GET | `/api/limits` | the largest firmware file and the uploads allowed at once (no session needed) |
//! | GET | `/api/state` | the user, the installations they see (whether each GX is online), each battery and its latest update |
//! | GET | `/api/events` | the same, pushed as server-sent events on every change |
//! | POST | `/api/installations/{id}/batteries/{instance}/firmware?name=` | uploads a firmware file (body: the bytes) |
//! | DELETE | `/api/installations/{id}/batteries/{instance}/firmware` | removes the staged file (before Update) |
//! | POST | `/api/installations/{id}/batteries/{instance}/update` | Update: `{acknowledgements, version_policy, targets}` (`targets`: node ids or module numbers, left out for all) |
//! | POST | `/api/installations/{id}/batteries/{instance}/retry` | the same file again after a failure |
//! | GET | `/api/installations/{id}/batteries/{instance}/events` | the battery's event log, from the GX |
//! | GET | `/api/installations/{id}/jobs/{job}/diagnostics` | the diagnostics bundle, as a download |
//! | GET | `/api/installations/{id}/batteries/{instance}/updates` | the battery's updates started from this portal, newest first |
//!
//! With the portal's store, the event log and the diagnostics come from it while the GX
//! does not answer (`"source": "portal"` in the event log, `X-Bmsfw-Source: portal` on
//! the diagnostics), and sessions and files waiting for Update survive a restart.
//!
//! Every POST needs the header `X-Requested-With: bmsfw` (a cross-site form cannot send it)
//! and the session cookie is `SameSite=Strict; HttpOnly`. Monitor-only users get 403 on
//! everything that starts something.
//!
//! The session and the access level are checked before any request body is read: a
//! refused upload costs the server its headers only. Such a refusal (any 4xx or 5xx
//! to a request with a body) says `Connection: close`, so that no client reuses a
//! connection whose body was left unread, and the portal then reads and drops up to
//! 1 MiB of what the client still sends, for at most 2 s, before it closes: closing
//! with unread data would reset the connection and could destroy the answer. A request's head must arrive within
//! `header_timeout`, and its body without a pause longer than `body_idle_timeout` and
//! whole within `body_timeout` ([`WebSettings`]); slower clients get 408 or a closed
//! connection.

mod assets;
mod handlers;
pub mod limits;
mod persist;
pub mod safe_text;
mod session;
pub mod view;

use crate::auth::{LoginThrottle, PasswordChecker, Sessions, Users};
use crate::vrm::{StoredFile, VrmSide};
use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bmsfw_vrm_wire::PortalId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use limits::WebSettings;
pub use session::CurrentUser;

/// The header every POST must carry.
pub const CSRF_HEADER: &str = "x-requested-with";
/// Its value.
pub const CSRF_VALUE: &str = "bmsfw";
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "bmsfw_session";
/// Most uploaded files waiting for Update at once (the oldest is dropped beyond).
pub const MAX_PENDING_FILES: usize = 32;

/// Files uploaded and waiting for Update, by user, installation and battery, with when.
type PendingFiles = HashMap<(String, PortalId, u32), (std::time::Instant, StoredFile)>;

/// The web application's shared state.
pub struct PortalApp {
    vrm: VrmSide,
    users: Arc<Users>,
    passwords: PasswordChecker,
    sessions: Sessions,
    throttle: LoginThrottle,
    files: Mutex<PendingFiles>,
    settings: WebSettings,
    uploads: limits::UploadSlots,
    store: Option<crate::store::Store>,
}

impl std::fmt::Debug for PortalApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortalApp").finish_non_exhaustive()
    }
}

impl PortalApp {
    /// The application over `vrm` with these users; logins last `session_lifetime`;
    /// uploads are limited to `max_upload` bytes; the other limits are the defaults.
    pub fn new(
        vrm: VrmSide,
        users: Users,
        session_lifetime: Duration,
        max_upload: usize,
    ) -> Arc<PortalApp> {
        PortalApp::with_settings(
            vrm,
            users,
            WebSettings {
                session_lifetime,
                max_upload_bytes: max_upload as u64,
                ..WebSettings::default()
            },
        )
    }

    /// The application over `vrm` with these users and limits. Starts the password
    /// workers, which end when the application is dropped.
    pub fn with_settings(vrm: VrmSide, users: Users, settings: WebSettings) -> Arc<PortalApp> {
        let users = Arc::new(users);
        Arc::new(PortalApp {
            vrm,
            passwords: PasswordChecker::start(Arc::clone(&users), settings.password_workers),
            users,
            sessions: Sessions::new(settings.session_lifetime),
            throttle: LoginThrottle::default(),
            files: Mutex::new(HashMap::new()),
            uploads: limits::UploadSlots::new(
                settings.max_uploads_per_user,
                settings.max_uploads_total,
            ),
            settings,
            store: None,
        })
    }

    /// The limits this application applies.
    pub fn settings(&self) -> &WebSettings {
        &self.settings
    }

    /// Passwords checked so far (argon2 computations), for tests and monitoring.
    pub fn password_checks(&self) -> u64 {
        self.passwords.checks()
    }

    /// Uploads being received now.
    pub fn uploads_in_use(&self) -> usize {
        self.uploads.in_use()
    }

    /// The MQTT side.
    pub fn vrm(&self) -> &VrmSide {
        &self.vrm
    }

    fn files(&self) -> std::sync::MutexGuard<'_, PendingFiles> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The file `user` uploaded for battery `instance` of `portal_id`.
    fn pending_file(&self, user: &str, portal_id: &PortalId, instance: u32) -> Option<StoredFile> {
        self.files()
            .get(&(user.to_owned(), portal_id.clone(), instance))
            .map(|(_, f)| f.clone())
    }

    /// Keeps `file` until Update, dropping the oldest waiting file beyond
    /// [`MAX_PENDING_FILES`].
    fn keep_file(&self, user: &str, portal_id: PortalId, instance: u32, file: StoredFile) {
        let mut files = self.files();
        files.insert(
            (user.to_owned(), portal_id, instance),
            (std::time::Instant::now(), file),
        );
        while files.len() > MAX_PENDING_FILES {
            let Some(oldest) = files
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            files.remove(&oldest);
            if let Some(store) = &self.store {
                store.drop_pending(&oldest.0, &oldest.1, oldest.2);
            }
        }
    }
}

async fn security_headers(request: axum::extract::Request, next: Next) -> Response {
    let needs_csrf = request.method() == Method::POST;
    if needs_csrf
        && request
            .headers()
            .get(CSRF_HEADER)
            .is_none_or(|v| v.as_bytes() != CSRF_VALUE.as_bytes())
    {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({
                "error": "requests that change something need the X-Requested-With: bmsfw header"
            })),
        )
            .into_response();
    }
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// The routes of the UI and the API.
pub fn router(app: Arc<PortalApp>) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/app.js", get(assets::script))
        .route("/app.css", get(assets::style))
        .route("/favicon.svg", get(assets::icon))
        .route("/api/login", post(handlers::login))
        .route("/api/logout", post(handlers::logout))
        .route("/api/limits", get(limits::limits))
        .route("/api/state", get(handlers::state))
        .route("/api/events", get(handlers::events))
        .route(
            "/api/installations/{portal_id}/batteries/{instance}/firmware",
            // Streams its body itself, within WebSettings::max_upload_bytes.
            post(handlers::upload_firmware).delete(handlers::remove_firmware),
        )
        .route(
            "/api/installations/{portal_id}/batteries/{instance}/update",
            post(handlers::update),
        )
        .route(
            "/api/installations/{portal_id}/batteries/{instance}/retry",
            post(handlers::retry),
        )
        .route(
            "/api/installations/{portal_id}/batteries/{instance}/events",
            get(handlers::event_log),
        )
        .route(
            "/api/installations/{portal_id}/jobs/{job}/diagnostics",
            get(handlers::diagnostics),
        )
        .route(
            "/api/installations/{portal_id}/batteries/{instance}/updates",
            get(persist::history),
        )
        .layer(DefaultBodyLimit::max(64 * 1024))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&app),
            limits::body_timeouts,
        ))
        .layer(middleware::from_fn(security_headers))
        .with_state(app)
}

/// Serves the portal on `listener` (HTTP/1.1) until the task is dropped. Each connection
/// must send a request's head within [`WebSettings::header_timeout`], also between two
/// requests, or it is closed; handlers see the peer's address as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve(listener: tokio::net::TcpListener, app: Arc<PortalApp>) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let header_timeout = app.settings.header_timeout;
    let router = router(app);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors or a connection reset before it was accepted:
                // keep serving the others.
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |mut request: axum::http::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    let sends_body = sends_body(request.headers());
                    let mut router = router.clone();
                    let call = tower_service::Service::call(
                        &mut router,
                        request.map(axum::body::Body::new),
                    );
                    async move {
                        let mut response = call.await?;
                        let status = response.status();
                        if sends_body && (status.is_client_error() || status.is_server_error()) {
                            // A refusal may come before the body was read; the connection
                            // then ends after this answer, and the client must not reuse it.
                            response
                                .headers_mut()
                                .insert(header::CONNECTION, HeaderValue::from_static("close"));
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    }
                },
            );
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .without_shutdown();
            match connection.await {
                Ok(parts) => close_lingering(parts.io.into_inner()).await,
                Err(e) => tracing::debug!(peer = %peer, "connection ended: {e}"),
            }
        });
    }
}

/// Whether a request's head announces a body.
fn sends_body(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|n| n.as_bytes() != b"0")
}

/// How much of a refused request's unread body [`close_lingering`] reads and drops.
const LINGER_BYTES: usize = 1024 * 1024;
/// How long [`close_lingering`] waits for the client to stop sending.
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Closes a connection so that the client can read the last answer. A refusal is sent
/// before the request's body is read (a 401, 403 or 413 on an upload); closing a socket
/// with unread data makes the kernel reset the connection, and the reset can destroy the
/// answer before the client reads it, leaving a browser with a network error instead of
/// "log in first". So: end the sending side, then read and drop what the client still
/// sends, at most [`LINGER_BYTES`] for at most [`LINGER_TIME`], before closing.
async fn close_lingering(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 16 * 1024];
    let mut left = LINGER_BYTES;
    let drain = async {
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

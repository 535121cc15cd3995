//! The web server's limits: how large an upload may be and how many may run at once, how
//! long a client may take to send a request, and the `/api/limits` the page reads.

use crate::web::PortalApp;
use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_stream::StreamExt;

/// What the web server allows; `portal.toml` sets each (see [`crate::config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSettings {
    /// How long a login lasts.
    pub session_lifetime: Duration,
    /// Largest firmware file accepted, in bytes (the GX's staging limit).
    pub max_upload_bytes: u64,
    /// Uploads one user may send at once.
    pub max_uploads_per_user: usize,
    /// Uploads the portal receives at once, from all users.
    pub max_uploads_total: usize,
    /// Time to receive a request's head (line and headers); also how long an idle
    /// connection stays open between requests.
    pub header_timeout: Duration,
    /// Longest pause while a request's body arrives.
    pub body_idle_timeout: Duration,
    /// Longest time to receive a whole request body.
    pub body_timeout: Duration,
    /// Threads checking passwords (each holds at most one argon2 buffer).
    pub password_workers: usize,
}

impl Default for WebSettings {
    fn default() -> WebSettings {
        let d = crate::config::PortalConfig::default();
        d.web_settings()
    }
}

/// `n` bytes for people: "16 MiB", "60.5 MiB", "900 KiB", "12 bytes".
pub fn size_label(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    if n >= MIB {
        if n % MIB == 0 {
            format!("{} MiB", n / MIB)
        } else {
            format!("{:.1} MiB", n as f64 / MIB as f64)
        }
    } else if n >= KIB {
        format!("{} KiB", n.div_ceil(KIB))
    } else {
        format!("{n} bytes")
    }
}

/// The limits the page needs before an upload (`GET /api/limits`).
#[derive(Debug, Clone, Serialize)]
pub struct LimitsJson {
    /// Largest firmware file accepted, in bytes: the GX's staging limit.
    pub max_upload_bytes: u64,
    /// The same for people ("16 MiB").
    pub max_upload_label: String,
    /// Uploads one user may send at once.
    pub max_uploads_per_user: usize,
    /// Uploads the portal receives at once.
    pub max_uploads_total: usize,
    /// Longest file name, in bytes.
    pub max_file_name_bytes: usize,
}

/// `GET /api/limits`: needs no session (the login page may show them).
pub async fn limits(State(app): State<Arc<PortalApp>>) -> Json<LimitsJson> {
    let s = &app.settings;
    Json(LimitsJson {
        max_upload_bytes: s.max_upload_bytes,
        max_upload_label: size_label(s.max_upload_bytes),
        max_uploads_per_user: s.max_uploads_per_user,
        max_uploads_total: s.max_uploads_total,
        max_file_name_bytes: bmsfw_vrm_wire::limits::MAX_FILE_NAME,
    })
}

/// Why an upload may not start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadsBusy {
    /// The user sends this many already.
    User(usize),
    /// The portal receives this many already.
    Total(usize),
}

impl UploadsBusy {
    /// The refusal in words.
    pub fn message(self) -> String {
        match self {
            UploadsBusy::User(n) => format!(
                "you are uploading {n} file(s) already; wait until one has arrived, then try again"
            ),
            UploadsBusy::Total(n) => {
                format!("the portal is receiving {n} uploads already; try again in a minute")
            }
        }
    }
}

/// Counts the uploads being received, per user and in all.
#[derive(Debug)]
pub struct UploadSlots {
    per_user: usize,
    total: usize,
    /// Uploads under way in all, and per user.
    busy: Mutex<(usize, HashMap<String, usize>)>,
}

/// One upload under way; its slot is free again when it is dropped.
#[derive(Debug)]
pub struct UploadSlot<'a> {
    slots: &'a UploadSlots,
    user: String,
}

impl UploadSlots {
    /// At most `per_user` uploads per user and `total` in all.
    pub fn new(per_user: usize, total: usize) -> UploadSlots {
        UploadSlots {
            per_user: per_user.max(1),
            total: total.max(1),
            busy: Mutex::new((0, HashMap::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, HashMap<String, usize>)> {
        self.busy.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for an upload of `user`, or why not.
    pub fn take(&self, user: &str) -> Result<UploadSlot<'_>, UploadsBusy> {
        let mut busy = self.lock();
        let mine = busy.1.get(user).copied().unwrap_or(0);
        if mine >= self.per_user {
            return Err(UploadsBusy::User(mine));
        }
        if busy.0 >= self.total {
            return Err(UploadsBusy::Total(busy.0));
        }
        busy.0 += 1;
        *busy.1.entry(user.to_owned()).or_insert(0) += 1;
        Ok(UploadSlot {
            slots: self,
            user: user.to_owned(),
        })
    }

    /// Uploads under way.
    pub fn in_use(&self) -> usize {
        self.lock().0
    }
}

impl Drop for UploadSlot<'_> {
    fn drop(&mut self) {
        let mut busy = self.slots.lock();
        busy.0 = busy.0.saturating_sub(1);
        if let Some(n) = busy.1.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                busy.1.remove(&self.user);
            }
        }
    }
}

/// A request body that stopped arriving in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimeout;

/// Whether `error`, from reading a request body, is a [`BodyTimeout`].
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut e: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(err) = e {
        if err.is::<BodyTimeout>() {
            return true;
        }
        e = err.source();
    }
    false
}

/// The answer to a request whose body stopped arriving: 408, and the connection closes.
pub fn body_timeout_response() -> Response {
    let mut r = (
        StatusCode::REQUEST_TIMEOUT,
        Json(serde_json::json!({
            "error": "the request did not arrive in time; check the connection and try again",
            "code": null,
        })),
    )
        .into_response();
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Middleware: a request body must keep arriving (no pause longer than
/// [`WebSettings::body_idle_timeout`]) and arrive whole within
/// [`WebSettings::body_timeout`]; otherwise reading it fails with [`BodyTimeout`] and the
/// answer is 408. Bodies nobody reads are not waited for.
pub async fn body_timeouts(
    State(app): State<Arc<PortalApp>>,
    request: Request,
    next: Next,
) -> Response {
    use axum::body::HttpBody;
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let idle = app.settings.body_idle_timeout;
    let total = app.settings.body_timeout;
    let timed_out = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&timed_out);
    let (parts, body) = request.into_parts();
    let deadline = tokio::time::Instant::now() + total;
    let stream = body.into_data_stream().timeout(idle).map(move |item| {
        let late = tokio::time::Instant::now() > deadline;
        match item {
            Ok(Ok(bytes)) if !late => Ok(bytes),
            Ok(Err(e)) => Err(axum::Error::new(e)),
            Ok(Ok(_)) | Err(_) => {
                flag.store(true, Ordering::Relaxed);
                Err(axum::Error::new(BodyTimeout))
            }
        }
    });
    let request = Request::from_parts(parts, Body::from_stream(stream));
    let response = next.run(request).await;
    if timed_out.load(Ordering::Relaxed) {
        body_timeout_response()
    } else {
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(size_label(16 * 1024 * 1024), "16 MiB");
        assert_eq!(size_label(60 * 1024 * 1024 + 512 * 1024), "60.5 MiB");
        assert_eq!(size_label(2000), "2 KiB");
        assert_eq!(size_label(12), "12 bytes");
    }

    #[test]
    fn upload_slots_per_user_and_in_all() {
        let slots = UploadSlots::new(2, 3);
        let a1 = slots.take("ann").unwrap();
        let _a2 = slots.take("ann").unwrap();
        assert_eq!(slots.take("ann").unwrap_err(), UploadsBusy::User(2));
        let _b1 = slots.take("bob").unwrap();
        assert_eq!(slots.take("bob").unwrap_err(), UploadsBusy::Total(3));
        drop(a1);
        assert_eq!(slots.in_use(), 2);
        let _b2 = slots.take("bob").unwrap();
    }
}

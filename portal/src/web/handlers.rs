//! The API's handlers.

use crate::auth::Throttled;
use crate::vrm::{StoredFile, UpdateOrder, VrmError};
use crate::web::limits::{is_body_timeout, size_label};
use crate::web::safe_text;
use crate::web::session::{CurrentUser, FullControl, PeerAddr};
use crate::web::view::{
    BatteryJson, PendingFile, StateJson, UserJson, installation_json, latest_update, update_blocked,
};
use crate::web::{PortalApp, SESSION_COOKIE};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bmsfw_vrm_wire::{Acknowledgement, FileName, PortalId, TargetList, VersionPolicy};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::WatchStream;

/// An API error: a status, a message and, when it has one, its stable code (the GX's, or
/// the portal's own 717 for a GX that is offline).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    code: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            code: None,
        }
    }

    /// A refusal with a catalogue code.
    fn coded(status: StatusCode, code: Option<u32>, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            code,
        }
    }
}

impl From<VrmError> for ApiError {
    fn from(e: VrmError) -> ApiError {
        let status = match &e {
            VrmError::NotFound(_) => StatusCode::NOT_FOUND,
            VrmError::NotAllowed(_) | VrmError::GxOffline(_) => StatusCode::CONFLICT,
            VrmError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            VrmError::Refused { .. } => StatusCode::BAD_GATEWAY,
            VrmError::Stopped | VrmError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let code = e.code();
        ApiError {
            status,
            message: e.to_string(),
            code,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({
                "error": self.message,
                "code": self.code,
                // The catalogue's words for the page (title, first action, steps).
                "info": self.code.map(|c| crate::web::view::error_json(Some(c), Some(&self.message))),
            })),
        )
            .into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    username: String,
    password: String,
}

fn session_cookie(token: &str, max_age: Option<u64>) -> HeaderValue {
    let age = max_age.map_or("Max-Age=0".to_owned(), |s| format!("Max-Age={s}"));
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; {age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("bmsfw_session=; Path=/; Max-Age=0"))
}

/// 429 or 503 with a `Retry-After`.
fn try_later(status: StatusCode, message: String, wait: Duration) -> Response {
    let mut r = ApiError::new(status, message).into_response();
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(wait.as_secs().max(1)),
    );
    r
}

pub async fn login(
    State(app): State<Arc<PortalApp>>,
    PeerAddr(peer): PeerAddr,
    Json(body): Json<LoginBody>,
) -> ApiResult<Response> {
    let refused = || ApiError::new(StatusCode::UNAUTHORIZED, "wrong user name or password");
    if body.username.len() > 64 || body.password.len() > 256 {
        return Err(refused());
    }
    // The attempt counts before its password is checked, so that attempts in parallel
    // cannot outrun the lockout.
    let known = app.users.is_known(&body.username);
    let attempt = match app.throttle.begin(&body.username, known, peer) {
        Ok(attempt) => attempt,
        Err(t) => {
            let who = match t {
                Throttled::User(_) => "for this user",
                Throttled::Address(_) => "from your address",
            };
            let wait = t.wait();
            return Ok(try_later(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many failed logins {who}; try again in {} s",
                    wait.as_secs().max(1)
                ),
                wait,
            ));
        }
    };
    // argon2 runs on the password workers: a fixed number of threads and buffers.
    let Ok(user) = app.passwords.verify(&body.username, &body.password).await else {
        attempt.not_checked();
        return Ok(try_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "the portal is checking many logins at once; try again in a few seconds".into(),
            Duration::from_secs(2),
        ));
    };
    let Some(user) = user else {
        tracing::info!("failed login");
        drop(attempt);
        return Err(refused());
    };
    attempt.succeeded();
    let token = app.sessions.create(&user);
    tracing::info!(user = %user.name, "login");
    let mut response = Json(UserJson {
        name: user.name.clone(),
        access: user.access,
        access_label: user.access.label(),
    })
    .into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&token, Some(app.settings.session_lifetime.as_secs())),
    );
    Ok(response)
}

pub async fn logout(State(app): State<Arc<PortalApp>>, user: CurrentUser) -> Response {
    app.sessions.remove(&user.token);
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", None));
    response
}

fn state_for(app: &PortalApp, user: &CurrentUser) -> StateJson {
    let snap = app.vrm.snapshot();
    let mut installations = Vec::new();
    for inst in snap.installations.values() {
        if !user.record.sees(inst.portal_id.as_str()) {
            continue;
        }
        let mut json = installation_json(inst);
        for b in inst.batteries.values() {
            let mut latest = latest_update(&snap, inst, b);
            // A name published by a GX is shown with its hidden characters marked.
            if let Some(name) = latest.as_mut().and_then(|u| u.file_name.as_mut()) {
                *name = safe_text::shown(name);
            }
            let blocked = update_blocked(user.record.access, inst, b, latest.as_ref());
            let pending_file = app
                .pending_file(&user.record.name, &inst.portal_id, b.instance)
                .map(|f| {
                    let check = snap.preflights.iter().rev().find(|p| {
                        p.user == user.record.name
                            && p.portal_id == inst.portal_id
                            && p.instance == b.instance
                            && p.sha256 == f.sha256.to_string()
                    });
                    PendingFile {
                        check: Some(crate::web::view::check_json(check)),
                        ..PendingFile::of(&f)
                    }
                });
            json.batteries.push(BatteryJson {
                battery: b.clone(),
                stale: inst.presence.is_offline(),
                latest_update: latest,
                pending_file,
                can_update: blocked.is_none(),
                update_blocked: blocked,
            });
        }
        installations.push(json);
    }
    StateJson {
        user: UserJson {
            name: user.record.name.clone(),
            access: user.record.access,
            access_label: user.record.access.label(),
        },
        connected: snap.connected,
        installations,
    }
}

pub async fn state(State(app): State<Arc<PortalApp>>, user: CurrentUser) -> Json<StateJson> {
    Json(state_for(&app, &user))
}

pub async fn events(
    State(app): State<Arc<PortalApp>>,
    user: CurrentUser,
) -> Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>> {
    let changes = WatchStream::new(app.vrm.changes());
    let stream = changes
        // Many changes in a burst (chunk acknowledgements) make one event per 100 ms.
        .throttle(Duration::from_millis(100))
        .map(move |_| {
            let json = serde_json::to_string(&state_for(&app, &user)).unwrap_or_default();
            Ok(Event::default().event("state").data(json))
        });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn visible(app: &PortalApp, user: &CurrentUser, portal_id: &str) -> ApiResult<PortalId> {
    let id = PortalId::new(portal_id)
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e.to_string()))?;
    let known = app.vrm.snapshot().installations.contains_key(&id);
    if !known || !user.record.sees(id.as_str()) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no installation {id}"),
        ));
    }
    Ok(id)
}

/// 404 unless installation `id` has battery `instance`.
fn battery_exists(app: &PortalApp, id: &PortalId, instance: u32) -> ApiResult<()> {
    let known = app
        .vrm
        .snapshot()
        .installations
        .get(id)
        .is_some_and(|i| i.batteries.contains_key(&instance));
    if known {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no battery {instance} on {id}"),
        ))
    }
}

#[derive(Deserialize)]
pub struct FileQuery {
    name: String,
}

/// 413 for a file of `size` bytes (unknown: it went on past the limit).
fn too_large(limit: u64, size: Option<u64>) -> ApiError {
    let size = size.map_or_else(
        || format!("larger than {}", size_label(limit)),
        |n| format!("{} ({n} bytes)", size_label(n)),
    );
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the file is {size}; the GX device accepts firmware files of at most {} \
             ({limit} bytes)",
            size_label(limit)
        ),
    )
}

/// Reads an upload's body, at most `limit` bytes.
async fn read_upload(body: Body, declared: Option<u64>, limit: u64) -> ApiResult<Vec<u8>> {
    let capacity = usize::try_from(declared.unwrap_or(0).min(limit)).unwrap_or(0);
    let mut data = Vec::with_capacity(capacity);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if is_body_timeout(&e) {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "the file did not arrive in time; check the connection and try again",
                )
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("the upload was cut short: {e}"),
                )
            }
        })?;
        if (data.len() + chunk.len()) as u64 > limit {
            return Err(too_large(limit, None));
        }
        data.extend_from_slice(&chunk);
    }
    Ok(data)
}

/// Uploads a firmware file. Who may upload, the battery, the name, the declared size and
/// a free upload slot are all checked before the body is read; the body is read up to the
/// limit and no further.
pub async fn upload_firmware(
    State(app): State<Arc<PortalApp>>,
    FullControl(user): FullControl,
    Path((portal_id, instance)): Path<(String, u32)>,
    Query(q): Query<FileQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<PendingFile>> {
    let id = visible(&app, &user, &portal_id)?;
    battery_exists(&app, &id, instance)?;
    // The name is kept, sent to the GX and shown with its hidden characters marked.
    let name = FileName::new(&safe_text::shown(&q.name))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("file name: {e}")))?;
    let limit = app.settings.max_upload_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit, declared));
    }
    if declared == Some(0) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "the file is empty"));
    }
    let _slot = app
        .uploads
        .take(&user.record.name)
        .map_err(|busy| ApiError::new(StatusCode::TOO_MANY_REQUESTS, busy.message()))?;
    let data = read_upload(body, declared, limit).await?;
    if data.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "the file is empty"));
    }
    let file = StoredFile::new(name, data);
    let pending = PendingFile::of(&file);
    let check = crate::preflight::PreflightOrder {
        portal_id: id.clone(),
        instance,
        user: user.record.name.clone(),
        file: file.clone(),
    };
    tracing::info!(user = %user.record.name, portal = %id, instance, file = %pending.name, size = pending.size, "firmware file uploaded");
    app.stage_file(&user.record.name, id.clone(), instance, file)
        .await
        .map_err(VrmError::from)?;
    // The GX checks the file at once: the page shows the verdict before any warning. A GX
    // that cannot take it now (offline, not Full) gets the file checked at Update, which
    // it refuses for the same reason.
    if let Err(e) = app.vrm.start_preflight(check).await {
        tracing::info!(portal = %id, instance, error = %e, "no pre-flight check of the file");
    }
    app.vrm.touch();
    Ok(Json(pending))
}

/// Removes the file `user` staged for a battery (before Update): the page's "Remove file".
pub async fn remove_firmware(
    State(app): State<Arc<PortalApp>>,
    FullControl(user): FullControl,
    Path((portal_id, instance)): Path<(String, u32)>,
) -> ApiResult<StatusCode> {
    let id = visible(&app, &user, &portal_id)?;
    app.vrm
        .preflights()
        .forget(&user.record.name, &id, instance);
    app.forget_file(&(user.record.name.clone(), id, instance));
    app.vrm.touch();
    Ok(StatusCode::NO_CONTENT)
}

/// How long Update waits for a pre-flight check still running (a script that uploads
/// and presses Update at once).
const CHECK_WAIT: Duration = Duration::from_secs(60);

/// Update goes on only after the file passed its pre-flight check (or the GX cannot check
/// in advance); waits for a check still running.
async fn checked(
    app: &PortalApp,
    user: &str,
    id: &PortalId,
    instance: u32,
    file: &StoredFile,
) -> ApiResult<()> {
    use crate::preflight::PreflightPhase;
    let sha = file.sha256.to_string();
    let mut changes = app.vrm.changes();
    let deadline = tokio::time::Instant::now() + CHECK_WAIT;
    loop {
        let Some(check) = app.vrm.preflights().find(user, id, instance, &sha) else {
            // No check (the portal restarted since the upload): the GX checks at Update.
            return Ok(());
        };
        match check.phase {
            PreflightPhase::Passed | PreflightPhase::Unavailable => return Ok(()),
            PreflightPhase::Refused => {
                let message = check
                    .error
                    .unwrap_or_else(|| "the GX device refused the file".into());
                return Err(ApiError::coded(
                    StatusCode::CONFLICT,
                    check.error_code,
                    format!("the file did not pass its check: {message}"),
                ));
            }
            PreflightPhase::Sending | PreflightPhase::Checking => {}
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "the GX device is still checking the file; press Update once the check has passed",
            ));
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    acknowledgements: BTreeSet<Acknowledgement>,
    #[serde(default)]
    version_policy: VersionPolicy,
    /// The nodes or modules to update; left out or `null`: every one.
    #[serde(default)]
    targets: Option<Vec<u16>>,
}

/// The body's choice of nodes or modules, checked as the GX will check it.
fn targets_of(body: &UpdateBody) -> ApiResult<Option<TargetList>> {
    body.targets
        .clone()
        .map(TargetList::new)
        .transpose()
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the choice of nodes or modules {e}"),
            )
        })
}

fn check_acknowledgements(body: &UpdateBody) -> ApiResult<()> {
    let missing: Vec<&str> = Acknowledgement::ALL
        .iter()
        .filter(|a| !body.acknowledgements.contains(a))
        .map(|a| match a {
            Acknowledgement::SiteReachable => "site physically reachable",
            Acknowledgement::BackupCapacity => "adequate backup capacity",
            Acknowledgement::MaintenanceWindow => "planned maintenance window",
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "confirm every warning first; missing: {}",
                missing.join(", ")
            ),
        ))
    }
}

pub async fn update(
    State(app): State<Arc<PortalApp>>,
    FullControl(user): FullControl,
    Path((portal_id, instance)): Path<(String, u32)>,
    Json(body): Json<UpdateBody>,
) -> ApiResult<Json<serde_json::Value>> {
    let id = visible(&app, &user, &portal_id)?;
    battery_exists(&app, &id, instance)?;
    check_acknowledgements(&body)?;
    let targets = targets_of(&body)?;
    let key = (user.record.name.clone(), id.clone(), instance);
    let file = app.pending_file(&key.0, &key.1, key.2).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "upload the firmware file first (menu: Upload firmware file)",
        )
    })?;
    let order = UpdateOrder {
        portal_id: id,
        instance,
        file,
        acknowledgements: body.acknowledgements,
        version_policy: body.version_policy,
        targets,
        user: user.record.name.clone(),
    };
    checked(&app, &key.0, &key.1, key.2, &order.file).await?;
    let commandid = app.vrm.start_update(order).await?;
    app.forget_file(&key);
    Ok(Json(serde_json::json!({"commandid": commandid})))
}

pub async fn retry(
    State(app): State<Arc<PortalApp>>,
    FullControl(user): FullControl,
    Path((portal_id, instance)): Path<(String, u32)>,
    Json(body): Json<UpdateBody>,
) -> ApiResult<Json<serde_json::Value>> {
    let id = visible(&app, &user, &portal_id)?;
    battery_exists(&app, &id, instance)?;
    check_acknowledgements(&body)?;
    let targets = targets_of(&body)?;
    let last = app.vrm.retry_order(&id, instance).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "no earlier update of this battery from this portal to retry",
        )
    })?;
    let order = UpdateOrder {
        acknowledgements: body.acknowledgements,
        version_policy: body.version_policy,
        targets,
        user: user.record.name.clone(),
        ..last
    };
    let commandid = app.vrm.start_update(order).await?;
    Ok(Json(serde_json::json!({"commandid": commandid})))
}

#[derive(Deserialize)]
pub struct LimitQuery {
    limit: Option<u16>,
}

pub async fn event_log(
    State(app): State<Arc<PortalApp>>,
    user: CurrentUser,
    Path((portal_id, instance)): Path<(String, u32)>,
    Query(q): Query<LimitQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let id = visible(&app, &user, &portal_id)?;
    let serial =
        app.vrm.serial_of(&id, instance).await?.ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("no battery {instance}"))
        })?;
    let limit = q
        .limit
        .unwrap_or(bmsfw_vrm_wire::limits::DEFAULT_EVENTS)
        .clamp(1, bmsfw_vrm_wire::limits::MAX_EVENTS);
    // From the GX; while it does not answer, as the portal last received it.
    let log = app.vrm.event_log(&id, &serial, limit).await?;
    let note = log.stored_at.map(|at| {
        format!(
            "The GX device does not answer: the event log as the portal received it, last at {}.",
            crate::presence::utc(at)
        )
    });
    Ok(Json(serde_json::json!({
        "serial": log.serial,
        "events": log.events,
        "source": if log.stored_at.is_some() { "portal" } else { "gx" },
        "stored_at": log.stored_at,
        "note": note,
    })))
}

pub async fn diagnostics(
    State(app): State<Arc<PortalApp>>,
    user: CurrentUser,
    Path((portal_id, job)): Path<(String, u64)>,
) -> ApiResult<Response> {
    let id = visible(&app, &user, &portal_id)?;
    // From the GX; while it does not answer, the snapshot the portal stored.
    let answer = app.vrm.diagnostics(&id, job).await?;
    let body = serde_json::to_string_pretty(&answer.bundle).unwrap_or_default();
    let disposition = format!("attachment; filename=\"bmsfw-diagnostics-{id}-job{job}.json\"");
    let mut response = (
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response();
    let h = response.headers_mut();
    match &answer.stored {
        None => {
            h.insert("x-bmsfw-source", HeaderValue::from_static("gx"));
        }
        Some((at, reason)) => {
            h.insert("x-bmsfw-source", HeaderValue::from_static("portal"));
            if let Ok(v) = HeaderValue::from_str(&crate::presence::utc(*at)) {
                h.insert("x-bmsfw-stored-at", v);
            }
            if let Ok(v) = HeaderValue::from_str(reason) {
                h.insert("x-bmsfw-stored-reason", v);
            }
        }
    }
    Ok(response)
}

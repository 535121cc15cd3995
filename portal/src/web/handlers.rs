//! The API's handlers.

use crate::vrm::{StoredFile, UpdateOrder, VrmError};
use crate::web::session::CurrentUser;
use crate::web::view::{
    BatteryJson, PendingFile, StateJson, UserJson, installation_json, latest_update, update_blocked,
};
use crate::web::{PortalApp, SESSION_COOKIE};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bmsfw_vrm_wire::command::{DiagnosticsQuery, EventLogQuery};
use bmsfw_vrm_wire::{
    Acknowledgement, Command, FileName, PortalId, Serial, TargetList, VersionPolicy,
};
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

    fn monitor_only() -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "your access level is Monitor only: you can see everything but start nothing",
        )
    }
}

impl From<VrmError> for ApiError {
    fn from(e: VrmError) -> ApiError {
        let status = match &e {
            VrmError::NotFound(_) => StatusCode::NOT_FOUND,
            VrmError::NotAllowed(_) | VrmError::GxOffline(_) => StatusCode::CONFLICT,
            VrmError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            VrmError::Refused { .. } => StatusCode::BAD_GATEWAY,
            VrmError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
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
            Json(serde_json::json!({"error": self.message, "code": self.code})),
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

pub async fn login(
    State(app): State<Arc<PortalApp>>,
    Json(body): Json<LoginBody>,
) -> ApiResult<Response> {
    let refused = || ApiError::new(StatusCode::UNAUTHORIZED, "wrong user name or password");
    if body.username.len() > 64 || body.password.len() > 256 {
        return Err(refused());
    }
    if let Err(wait) = app.throttle.check(&body.username) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many failed logins for this user; try again in {} s",
                wait.as_secs().max(1)
            ),
        ));
    }
    let name = body.username.clone();
    let app2 = Arc::clone(&app);
    // argon2 is deliberately slow: keep it off the async threads.
    let user = tokio::task::spawn_blocking(move || {
        app2.users.verify(&body.username, &body.password).cloned()
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let Some(user) = user else {
        tracing::info!("failed login");
        app.throttle.failed(&name);
        return Err(refused());
    };
    app.throttle.succeeded(&name);
    let token = app.sessions.create(&user);
    tracing::info!(user = %user.name, "login");
    let mut response = Json(UserJson {
        name: user.name.clone(),
        access: user.access,
        access_label: user.access.label(),
    })
    .into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&token, Some(12 * 3600)));
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
            let latest = latest_update(&snap, inst, b);
            let blocked = update_blocked(user.record.access, inst, b, latest.as_ref());
            let pending_file = app
                .pending_file(&user.record.name, &inst.portal_id, b.instance)
                .map(|f| PendingFile {
                    name: f.name.as_str().to_owned(),
                    size: f.data.len() as u64,
                    sha256: f.sha256.to_string(),
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

#[derive(Deserialize)]
pub struct FileQuery {
    name: String,
}

pub async fn upload_firmware(
    State(app): State<Arc<PortalApp>>,
    user: CurrentUser,
    Path((portal_id, instance)): Path<(String, u32)>,
    Query(q): Query<FileQuery>,
    body: Bytes,
) -> ApiResult<Json<PendingFile>> {
    let id = visible(&app, &user, &portal_id)?;
    if !user.has_full_control() {
        return Err(ApiError::monitor_only());
    }
    let name = FileName::new(&q.name)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("file name: {e}")))?;
    if body.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "the file is empty"));
    }
    if !app.vrm.snapshot().installations[&id]
        .batteries
        .contains_key(&instance)
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no battery {instance} on {id}"),
        ));
    }
    let file = StoredFile::new(name, body.to_vec());
    let pending = PendingFile {
        name: file.name.as_str().to_owned(),
        size: file.data.len() as u64,
        sha256: file.sha256.to_string(),
    };
    tracing::info!(user = %user.record.name, portal = %id, instance, file = %pending.name, size = pending.size, "firmware file uploaded");
    app.keep_file(&user.record.name, id, instance, file);
    app.vrm.touch();
    Ok(Json(pending))
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
    user: CurrentUser,
    Path((portal_id, instance)): Path<(String, u32)>,
    Json(body): Json<UpdateBody>,
) -> ApiResult<Json<serde_json::Value>> {
    let id = visible(&app, &user, &portal_id)?;
    if !user.has_full_control() {
        return Err(ApiError::monitor_only());
    }
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
    let commandid = app.vrm.start_update(order).await?;
    app.files().remove(&key);
    Ok(Json(serde_json::json!({"commandid": commandid})))
}

pub async fn retry(
    State(app): State<Arc<PortalApp>>,
    user: CurrentUser,
    Path((portal_id, instance)): Path<(String, u32)>,
    Json(body): Json<UpdateBody>,
) -> ApiResult<Json<serde_json::Value>> {
    let id = visible(&app, &user, &portal_id)?;
    if !user.has_full_control() {
        return Err(ApiError::monitor_only());
    }
    check_acknowledgements(&body)?;
    let targets = targets_of(&body)?;
    let last = app.vrm.last_order(&id, instance).ok_or_else(|| {
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
    let serial = app.vrm.snapshot().installations[&id]
        .batteries
        .get(&instance)
        .and_then(|b| b.serial.clone())
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no battery {instance}")))?;
    let battery = Serial::new(&serial)
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, format!("battery serial: {e}")))?;
    let limit = q
        .limit
        .unwrap_or(bmsfw_vrm_wire::limits::DEFAULT_EVENTS)
        .clamp(1, bmsfw_vrm_wire::limits::MAX_EVENTS);
    let reply = app
        .vrm
        .rpc(&id, Command::GetEventLog(EventLogQuery { battery, limit }))
        .await?;
    Ok(Json(serde_json::json!({
        "serial": serial,
        "events": reply.events.unwrap_or_default(),
    })))
}

pub async fn diagnostics(
    State(app): State<Arc<PortalApp>>,
    user: CurrentUser,
    Path((portal_id, job)): Path<(String, u64)>,
) -> ApiResult<Response> {
    let id = visible(&app, &user, &portal_id)?;
    let reply = app
        .vrm
        .rpc(&id, Command::GetDiagnostics(DiagnosticsQuery { job }))
        .await?;
    let body =
        serde_json::to_string_pretty(&reply.diagnostics.unwrap_or_default()).unwrap_or_default();
    let disposition = format!("attachment; filename=\"bmsfw-diagnostics-{id}-job{job}.json\"");
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

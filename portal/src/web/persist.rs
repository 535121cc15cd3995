//! The web side of the portal's store: sessions and files waiting for Update that survive
//! a restart, and each battery's update history.

use crate::auth::Users;
use crate::store::{Store, StoreError, StoredPending, StoredSession};
use crate::vrm::VrmSide;
use crate::vrm::{StoredFile, UpdateView, VrmError};
use crate::web::session::CurrentUser;
use crate::web::{PortalApp, WebSettings};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bmsfw_vrm_wire::PortalId;
use serde::Deserialize;
use std::sync::Arc;

impl PortalApp {
    /// The application over `vrm` with these users and limits, keeping its sessions and
    /// the files waiting for Update in `store`, and taking back the `sessions` and
    /// `pending` files the store kept (see [`Store::open`]).
    pub fn with_store(
        vrm: VrmSide,
        users: Users,
        settings: WebSettings,
        store: Store,
        sessions: Vec<StoredSession>,
        pending: Vec<StoredPending>,
    ) -> Arc<PortalApp> {
        let mut app = PortalApp::with_settings(vrm, users, settings);
        if let Some(a) = Arc::get_mut(&mut app) {
            a.sessions.persist(
                Arc::new(store.clone()),
                sessions
                    .into_iter()
                    .map(|s| (s.token_sha256, s.user, s.access, s.expires_at)),
            );
            {
                let mut files = a.files();
                let now = std::time::Instant::now();
                for p in pending {
                    // Older uploads first: the order of their age is kept.
                    let age = std::time::Duration::from_millis(
                        crate::presence::now_ms().saturating_sub(p.uploaded_at),
                    );
                    let at = now.checked_sub(age).unwrap_or(now);
                    files.insert((p.user, p.portal_id, p.instance), (at, p.file));
                }
            }
            a.store = Some(store);
        } else {
            tracing::error!(
                database = %store.path().display(),
                "the portal's store could not be attached: sessions and waiting files are not kept"
            );
        }
        app
    }

    /// The portal's store, when it keeps one.
    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// Keeps `file` until Update: first on disk in the store (when there is one), then
    /// here.
    pub(crate) async fn stage_file(
        &self,
        user: &str,
        portal_id: PortalId,
        instance: u32,
        file: StoredFile,
    ) -> Result<(), StoreError> {
        if let Some(store) = &self.store {
            store.put_pending(user, &portal_id, instance, &file).await?;
        }
        self.keep_file(user, portal_id, instance, file);
        Ok(())
    }

    /// The file waiting for Update under `key` goes (Update was pressed).
    pub(crate) fn forget_file(&self, key: &(String, PortalId, u32)) {
        self.files().remove(key);
        if let Some(store) = &self.store {
            store.drop_pending(&key.0, &key.1, key.2);
        }
    }
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    limit: Option<u32>,
}

/// Most updates in one history answer.
const MAX_HISTORY: u32 = 200;

/// `GET /api/installations/{id}/batteries/{instance}/updates`: the updates of a battery
/// started from this portal, newest first, kept across restarts.
pub async fn history(
    State(app): State<Arc<PortalApp>>,
    user: CurrentUser,
    Path((portal_id, instance)): Path<(String, u32)>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let error = |status: StatusCode, message: String, code: Option<u32>| {
        (
            status,
            Json(serde_json::json!({"error": message, "code": code})),
        )
            .into_response()
    };
    let id = match PortalId::new(&portal_id) {
        Ok(id)
            if user.record.sees(id.as_str())
                && app.vrm().snapshot().installations.contains_key(&id) =>
        {
            id
        }
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no installation {portal_id}"),
                None,
            );
        }
    };
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_HISTORY);
    match app.vrm().history(&id, instance, limit).await {
        Ok(updates) => Json(serde_json::json!({
            "instance": instance,
            "updates": updates
                .iter()
                .map(|(v, archived)| history_entry(v, *archived))
                .collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => {
            let status = match e {
                VrmError::Store(_) | VrmError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_GATEWAY,
            };
            error(status, e.to_string(), e.code())
        }
    }
}

/// One update of the history: its view, its state's label, whether it ended, and whether
/// the portal stored its event log (and the diagnostics of a failure) after the end.
fn history_entry(v: &UpdateView, archived: bool) -> serde_json::Value {
    let mut json = serde_json::to_value(v).unwrap_or_default();
    if let Some(o) = json.as_object_mut() {
        o.insert("archived".into(), archived.into());
        o.insert("state_label".into(), v.state.map(|s| s.label()).into());
        o.insert(
            "ended".into(),
            (v.finished || v.upload_phase == crate::upload::UploadPhase::Failed).into(),
        );
    }
    json
}

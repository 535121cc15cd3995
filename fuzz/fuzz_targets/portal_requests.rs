//! The portal's parsing of login and upload requests, through its real router: the
//! login body, the upload's path, query and headers, the session cookie, the body
//! limits. A session from a real login at start-up lets requests get past the
//! authentication check (the fuzzer may mangle the cookie too). Beside it, directly: the
//! upload name as the portal cleans and checks it, and the password file users log in
//! against.
//!
//! Input: a selector byte, then up to four fields separated by `0xFF`: the path tail or
//! the query, the cookie, the content length, the body.
#![no_main]

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::Router;
use axum::body::Body;
use bmsfw_portal::auth::{AccessLevel, UserRecord, Users, check_hash};
use bmsfw_portal::passwd::{PasswordFile, PasswordHash};
use bmsfw_portal::vrm::{VrmConfig, VrmSide};
use bmsfw_portal::web::{PortalApp, WebSettings, router, safe_text};
use bmsfw_vrm_wire::{BrokerAddr, FileName, PortalId};
use http::{Method, Request, header};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::Duration;
use tower::ServiceExt;

const PORTAL_ID: &str = "c0619ab1f2e3";
const USER: &str = "installer";
const PASSWORD: &str = "fuzzing-password";

struct Portal {
    runtime: tokio::runtime::Runtime,
    router: Router,
    cookie: String,
    _app: std::sync::Arc<PortalApp>,
}

fn portal() -> &'static Portal {
    static PORTAL: OnceLock<Portal> = OnceLock::new();
    PORTAL.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        // The cheapest argon2id hash the portal accepts keeps logins fast.
        let params = Params::new(8, 1, 1, None).expect("argon2 parameters");
        let salt = SaltString::encode_b64(b"fuzzing salt 16b").expect("a salt");
        let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(PASSWORD.as_bytes(), &salt)
            .expect("a hash")
            .to_string();
        let users = Users::new(vec![UserRecord {
            name: USER.into(),
            password_hash: hash,
            access: AccessLevel::FullControl,
            installations: vec!["*".into()],
        }])
        .expect("the users");
        let (router, app, cookie) = runtime.block_on(async {
            // No broker listens there: the portal keeps trying in the background.
            let mut config = VrmConfig::new(BrokerAddr::new("127.0.0.1", 9));
            config.reconnect_delay = Duration::from_secs(3600);
            let vrm = VrmSide::start(
                config,
                vec![(PortalId::new(PORTAL_ID).expect("an id"), "Fuzz site".into())],
            );
            let settings = WebSettings {
                max_upload_bytes: 4096,
                password_workers: 1,
                ..WebSettings::default()
            };
            let app = PortalApp::with_settings(vrm, users, settings);
            let router = router(std::sync::Arc::clone(&app));
            let login = Request::post("/api/login")
                .header(header::CONTENT_TYPE, "application/json")
                .header("x-requested-with", "bmsfw")
                .body(Body::from(format!(
                    r#"{{"username":"{USER}","password":"{PASSWORD}"}}"#
                )))
                .expect("a request");
            let response = router.clone().oneshot(login).await.expect("a response");
            assert!(
                response.status().is_success(),
                "the start-up login: {:?}",
                response
            );
            let cookie = response.headers()[header::SET_COOKIE]
                .to_str()
                .expect("a cookie")
                .split(';')
                .next()
                .expect("a cookie value")
                .to_owned();
            (router, app, cookie)
        });
        Portal {
            runtime,
            router,
            cookie,
            _app: app,
        }
    })
}

/// The upload name as the upload handler takes it: hidden characters shown, then
/// checked as a file name.
fn upload_name(name: &str) {
    let shown = safe_text::shown(name);
    assert!(!shown.chars().any(safe_text::is_hidden), "{shown:?}");
    if !name.chars().any(safe_text::is_hidden) {
        assert_eq!(shown, name);
    }
    if let Ok(file) = FileName::new(&shown) {
        assert!(!file.as_str().contains(['/', '\\']));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let mut fields = rest.splitn(4, |&b| b == 0xFF);
    let mut next = || String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    let (target, cookie, length, body) = (next(), next(), next(), next());
    match which % 4 {
        // The checks of the upload name and the password file, directly.
        0 => {
            upload_name(&target);
            if let Ok(q) = serde_urlencoded::from_str::<Vec<(String, String)>>(&target) {
                for (_, v) in q {
                    upload_name(&v);
                }
            }
            let _ = PasswordFile::parse(&body);
            let _ = PasswordHash::parse(&cookie);
            let _ = check_hash(&cookie);
        }
        // A login.
        1 => {
            let mut request =
                Request::post("/api/login").header(header::CONTENT_TYPE, "application/json");
            if !cookie.is_empty() {
                request = request.header(header::COOKIE, cookie.as_str());
            }
            send(which, request, body);
        }
        // An upload, with the session (kept or mangled) or without.
        _ => {
            let p = portal();
            let uri = if which & 4 == 0 {
                format!("/api/installations/{PORTAL_ID}/batteries/512/firmware?{target}")
            } else {
                format!("/api/installations/{target}")
            };
            let method = if which & 8 == 0 {
                Method::POST
            } else {
                Method::DELETE
            };
            let mut request = Request::builder().method(method).uri(uri.as_str());
            let cookie = if which & 16 == 0 {
                format!("{}; {cookie}", p.cookie)
            } else {
                cookie
            };
            request = request.header(header::COOKIE, cookie.as_str());
            if !length.is_empty() {
                request = request.header(header::CONTENT_LENGTH, length.as_str());
            }
            send(which, request, body);
        }
    }
});

/// Sends the request to the portal (with the header every change needs unless bit 5 of
/// `which` is set); requests the HTTP layer could not carry are dropped.
fn send(which: u8, mut request: http::request::Builder, body: String) {
    let p = portal();
    if which & 32 == 0 {
        request = request.header("x-requested-with", "bmsfw");
    }
    let Ok(request) = request.body(Body::from(body)) else {
        return;
    };
    let response = p
        .runtime
        .block_on(p.router.clone().oneshot(request))
        .expect("the router always answers");
    assert!(!response.status().is_server_error() || response.status().as_u16() == 503);
}

//! The portal under hostile clients, through its HTTP API as a client sees it: password
//! guessing in parallel, a flood of logins against the portal run as its own process
//! (its peak memory read from /proc), uploads refused before their body is read, the
//! upload limit the GX enforces, uploads at once, clients that stop sending, portal.toml
//! and demo.toml values out of range or not UTF-8, file names with hidden characters, and
//! a battery that does not exist.

mod support;

use bmsfw_portal::PortalApp;
use bmsfw_portal::auth::{
    AccessLevel, MAX_FAILED_LOGINS, MAX_FAILED_LOGINS_PER_ADDRESS, UserRecord, Users, hash_password,
};
use bmsfw_portal::web::WebSettings;
use bmsfw_vrm_wire::PortalId;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(20);
const MIB: u64 = 1024 * 1024;
const FULL: (&str, &str) = ("installer", "installer-password");
const FULL2: (&str, &str) = ("installer2", "second-installer-password");
const WATCHER: (&str, &str) = ("monitor", "monitor-password");

/// A portal in this process, with its MQTT side, a broker and (for tests that need a
/// battery) a GX publishing battery 512.
struct Site {
    url: String,
    addr: SocketAddr,
    app: Arc<PortalApp>,
    _gx: Option<Gx>,
    _dir: tempfile::TempDir,
    broker: Mosquitto,
}

impl Site {
    async fn start(settings: WebSettings, with_gx: bool) -> Site {
        let broker = Mosquitto::start();
        let dir = tempfile::tempdir().unwrap();
        let gx = if with_gx {
            let gx = Gx::start(&broker.addr(), dir.path());
            gx.connected().await;
            Some(gx)
        } else {
            None
        };
        let vrm = portal_side(&broker.addr(), 4096, 8);
        if with_gx {
            let id = PortalId::new(PORTAL_ID).unwrap();
            until_portal(&vrm, "battery 512 in the device list", WAIT, |s| {
                s.installations
                    .get(&id)
                    .is_some_and(|i| i.batteries.contains_key(&512))
            })
            .await;
        }
        let users = tokio::task::spawn_blocking(|| {
            let user = |(name, password): (&str, &str), access| UserRecord {
                name: name.into(),
                password_hash: hash_password(password).unwrap(),
                access,
                installations: vec![PORTAL_ID.into()],
            };
            Users::new(vec![
                user(FULL, AccessLevel::FullControl),
                user(FULL2, AccessLevel::FullControl),
                user(WATCHER, AccessLevel::MonitorOnly),
            ])
            .unwrap()
        })
        .await
        .unwrap();
        let app = PortalApp::with_settings(vrm, users, settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(bmsfw_portal::web::serve(listener, Arc::clone(&app)));
        Site {
            url: format!("http://{addr}"),
            addr,
            app,
            _gx: gx,
            _dir: dir,
            broker,
        }
    }

    fn battery(&self, instance: u32) -> String {
        format!(
            "{}/api/installations/{PORTAL_ID}/batteries/{instance}",
            self.url
        )
    }

    /// The path of battery `instance`'s upload, for raw requests.
    fn upload_path(instance: u32, name: &str) -> String {
        format!("/api/installations/{PORTAL_ID}/batteries/{instance}/firmware?name={name}")
    }
}

/// A client with its own cookies, connecting from loopback address `from` (any of
/// 127.0.0.0/8 reaches the portal on 127.0.0.1).
fn client_from(from: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .local_address(IpAddr::V4(from))
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

async fn login(c: &reqwest::Client, url: &str, (user, password): (&str, &str)) -> StatusCode {
    c.post(format!("{url}/api/login"))
        .header(CSRF_HEADER.0, CSRF_HEADER.1)
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
}

/// Logs in and returns the `Cookie` header value of the session.
async fn session(url: &str, (user, password): (&str, &str)) -> String {
    let r = http()
        .post(format!("{url}/api/login"))
        .header(CSRF_HEADER.0, CSRF_HEADER.1)
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

/// The head of an upload request of `length` bytes (chunked when `None`).
fn upload_head(addr: SocketAddr, path: &str, cookie: Option<&str>, length: Option<u64>) -> String {
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nX-Requested-With: bmsfw\r\n");
    if let Some(c) = cookie {
        head.push_str(&format!("Cookie: {c}\r\n"));
    }
    match length {
        Some(n) => head.push_str(&format!("Content-Length: {n}\r\n")),
        None => head.push_str("Transfer-Encoding: chunked\r\n"),
    }
    head.push_str("Content-Type: application/octet-stream\r\n\r\n");
    head
}

/// An HTTP response read from a raw connection.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    text: String,
}

/// Reads one response (head and a Content-Length body) within `limit`, or `None` if the
/// connection closed first or nothing complete came in time.
async fn read_response<R: AsyncReadExt + Unpin>(r: &mut R, limit: Duration) -> Option<RawResponse> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let status = head.split(' ').nth(1)?.parse().ok()?;
                let text = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                return Some(RawResponse { status, text });
            }
        }
        match tokio::time::timeout_at(deadline, r.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Waits until the connection is closed by the portal; returns how long it took and
/// anything it said first.
async fn until_closed(s: &mut TcpStream, limit: Duration) -> (Duration, String) {
    let start = Instant::now();
    let mut said = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), s.read(&mut chunk)).await
        {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (start.elapsed(), String::from_utf8_lossy(&said).into_owned());
            }
            Ok(Ok(n)) => said.extend_from_slice(&chunk[..n]),
            Err(_) => panic!(
                "the portal kept the connection open for {limit:?}; it said {:?}",
                String::from_utf8_lossy(&said)
            ),
        }
    }
}

/// Sends `total` bytes of body on `s` while reading the answer; returns the answer and
/// how many bytes the portal's side took before it answered and stopped reading.
async fn send_body_watching(s: TcpStream, total: u64, chunked: bool) -> (Option<RawResponse>, u64) {
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let piece = vec![0x5Au8; 64 * 1024];
        let mut sent = 0u64;
        while sent < total {
            let write = async {
                if chunked {
                    wr.write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                        .await?;
                    wr.write_all(&piece).await?;
                    wr.write_all(b"\r\n").await
                } else {
                    wr.write_all(&piece).await
                }
            };
            match tokio::time::timeout(Duration::from_secs(3), write).await {
                Ok(Ok(())) => sent += piece.len() as u64,
                // Refused (the portal closed) or stuck (it stopped reading).
                _ => break,
            }
        }
        sent
    });
    let answer = read_response(&mut rd, Duration::from_secs(30)).await;
    let sent = writer.await.unwrap();
    (answer, sent)
}

fn settings() -> WebSettings {
    WebSettings::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lockout_counts_attempts_before_checking_passwords_per_user_and_per_address() {
    let site = Site::start(settings(), false).await;
    let url = site.url.clone();
    let home = Ipv4Addr::new(127, 0, 0, 1);

    // 40 wrong passwords for one user at once.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let url = url.clone();
        tasks.spawn(async move { login(&client_from(home), &url, (FULL.0, "guess")).await });
    }
    let statuses = tasks.join_all().await;
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let throttled = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    println!(
        "40 parallel wrong passwords: {refused} x 401, {throttled} x 429, {} argon2 checks",
        site.app.password_checks()
    );
    assert_eq!(refused, MAX_FAILED_LOGINS as usize, "{statuses:?}");
    assert_eq!(throttled, 40 - MAX_FAILED_LOGINS as usize, "{statuses:?}");
    assert_eq!(site.app.password_checks(), u64::from(MAX_FAILED_LOGINS));

    // The name is locked, from any address and even with the right password, without
    // another check.
    let r = client_from(Ipv4Addr::new(127, 0, 0, 2))
        .post(format!("{url}/api/login"))
        .header(CSRF_HEADER.0, CSRF_HEADER.1)
        .json(&json!({"username": FULL.0, "password": FULL.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&wait), "Retry-After: {wait}");
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"].as_str().unwrap().contains("for this user"),
        "{e}"
    );
    assert_eq!(site.app.password_checks(), u64::from(MAX_FAILED_LOGINS));

    // One address guessing 30 names at once gets its allowance checked, no more.
    let guesser = Ipv4Addr::new(127, 0, 0, 3);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let url = url.clone();
        tasks.spawn(async move {
            login(&client_from(guesser), &url, (&format!("guess{i}"), "guess")).await
        });
    }
    let statuses = tasks.join_all().await;
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    println!(
        "30 parallel names from one address: {refused} x 401, {} x 429, {} argon2 checks in all",
        30 - refused,
        site.app.password_checks()
    );
    assert_eq!(
        refused, MAX_FAILED_LOGINS_PER_ADDRESS as usize,
        "{statuses:?}"
    );
    assert_eq!(
        site.app.password_checks(),
        u64::from(MAX_FAILED_LOGINS + MAX_FAILED_LOGINS_PER_ADDRESS)
    );
    // That address is locked for every name; other addresses are not.
    let r = client_from(guesser)
        .post(format!("{url}/api/login"))
        .header(CSRF_HEADER.0, CSRF_HEADER.1)
        .json(&json!({"username": WATCHER.0, "password": WATCHER.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"].as_str().unwrap().contains("from your address"),
        "{e}"
    );
    assert_eq!(
        login(&client_from(Ipv4Addr::new(127, 0, 0, 4)), &url, WATCHER).await,
        StatusCode::OK
    );
    assert_eq!(
        site.app.password_checks(),
        u64::from(MAX_FAILED_LOGINS + MAX_FAILED_LOGINS_PER_ADDRESS) + 1
    );
}

fn bmsfw_binary() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bmsfw"));
    c.stdin(Stdio::null());
    c
}

/// `VmHWM` or `VmRSS` of process `pid`, in KiB.
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The bound on the portal's peak resident memory under 150 logins at once. Each argon2
/// check of the shipped hashes needs 19 MiB; unbounded, 150 at once took 3 GB.
const LOGIN_FLOOD_PEAK_BOUND_MIB: u64 = 200;

#[test]
fn a_flood_of_logins_keeps_the_portal_process_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let http_port = free_port();
    let broker_port = free_port();
    let hash = hash_password("flood-password").unwrap();
    let mut toml = format!(
        "listen = \"127.0.0.1:{http_port}\"\nembedded_broker_listen = \"127.0.0.1:{broker_port}\"\n\
         [[installations]]\nportal_id = \"{PORTAL_ID}\"\nname = \"Flood\"\n"
    );
    for i in 0..100 {
        toml.push_str(&format!(
            "[[users]]\nname = \"user{i}\"\npassword_hash = \"{hash}\"\naccess = \"monitor-only\"\ninstallations = [\"*\"]\n"
        ));
    }
    let config = dir.path().join("portal.toml");
    std::fs::write(&config, toml).unwrap();
    let log = std::fs::File::create(dir.path().join("portal.log")).unwrap();
    let mut portal = bmsfw_binary()
        .args(["portal", "--config"])
        .arg(&config)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = portal.id();
    let url = format!("http://127.0.0.1:{http_port}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            let deadline = Instant::now() + WAIT;
            while reqwest::get(format!("{url}/api/limits")).await.is_err() {
                assert!(Instant::now() < deadline, "the portal did not start");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let before = memory_kib(pid, "VmRSS");
            // 100 users with the right password and 50 unknown names, each from its
            // own address, all at once.
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..150u32 {
                let url = url.clone();
                tasks.spawn(async move {
                    let from = Ipv4Addr::new(127, 0, 1 + (i / 200) as u8, 1 + (i % 200) as u8);
                    let who = if i < 100 {
                        format!("user{i}")
                    } else {
                        format!("ghost{i}")
                    };
                    let password = if i < 100 { "flood-password" } else { "guess" };
                    login(&client_from(from), &url, (&who, password)).await
                });
            }
            let statuses = tasks.join_all().await;
            let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
            let refused = statuses
                .iter()
                .filter(|s| **s == StatusCode::UNAUTHORIZED)
                .count();
            assert_eq!((ok, refused), (100, 50), "{statuses:?}");
            let peak = memory_kib(pid, "VmHWM");
            // Idle workers give their argon2 memory back.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let after = memory_kib(pid, "VmRSS");
            println!(
                "150 parallel logins: portal VmRSS before {} MiB, VmHWM {} MiB (bound \
                 {LOGIN_FLOOD_PEAK_BOUND_MIB} MiB), VmRSS 2 s after {} MiB",
                before / 1024,
                peak / 1024,
                after / 1024
            );
            assert!(
                peak / 1024 < LOGIN_FLOOD_PEAK_BOUND_MIB,
                "peak {} MiB",
                peak / 1024
            );
            // The two workers' buffers (19 MiB each) went back to the system.
            assert!(
                after + 30 * 1024 < peak,
                "after {} MiB, peak {} MiB",
                after / 1024,
                peak / 1024
            );
        })
    }));
    let _ = portal.kill();
    let _ = portal.wait();
    if let Err(panic) = outcome {
        eprintln!(
            "portal.log:\n{}",
            std::fs::read_to_string(dir.path().join("portal.log")).unwrap_or_default()
        );
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_refused_before_their_body_is_read() {
    let site = Site::start(settings(), true).await;
    let monitor = session(&site.url, WATCHER).await;
    let installer = session(&site.url, FULL).await;
    let path = Site::upload_path(512, "big.bin");
    let big = 60 * MIB;

    // No session, Monitor only, or a declared size above the limit: the answer comes
    // while the body has not been sent at all.
    for (cookie, status, says) in [
        (None, 401, "log in first"),
        (Some(monitor.as_str()), 403, "Monitor only"),
        (Some(installer.as_str()), 413, "at most 16 MiB"),
    ] {
        let mut s = TcpStream::connect(site.addr).await.unwrap();
        s.write_all(upload_head(site.addr, &path, cookie, Some(big)).as_bytes())
            .await
            .unwrap();
        let r = read_response(&mut s, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("no answer to {cookie:?} before the body"));
        assert_eq!(r.status, status, "{r:?}");
        assert!(r.text.contains(says), "{r:?}");
    }

    // A client that sends anyway is cut short: the portal answers and stops reading.
    for (cookie, chunked) in [(monitor.as_str(), false), (monitor.as_str(), true)] {
        let length = (!chunked).then_some(big);
        let mut s = TcpStream::connect(site.addr).await.unwrap();
        s.write_all(upload_head(site.addr, &path, Some(cookie), length).as_bytes())
            .await
            .unwrap();
        let (answer, sent) = send_body_watching(s, big, chunked).await;
        println!(
            "monitor-only 60 MiB upload (chunked: {chunked}): answered {:?} after the client \
             could send {} KiB",
            answer.as_ref().map(|a| a.status),
            sent / 1024
        );
        assert_eq!(answer.map(|a| a.status), Some(403));
        assert!(sent < 16 * MIB, "the client sent {sent} bytes");
    }
    assert_eq!(site.app.uploads_in_use(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sent_its_whole_body_still_reads_the_refusal() {
    // A script sends its whole upload before it reads the answer, as HTTP clients do
    // with a small body. The portal refuses before reading the body; the answer must
    // still reach the client, not be lost to a reset of the connection.
    let site = Site::start(settings(), true).await;
    let monitor = session(&site.url, WATCHER).await;
    let path = Site::upload_path(512, "small.bin");
    let body = vec![0x5Au8; 900 * 1024];
    let with_csrf = upload_head(site.addr, &path, Some(&monitor), Some(body.len() as u64));
    let without_csrf = with_csrf.replace("X-Requested-With: bmsfw\r\n", "");
    for (head, status, says) in [
        (with_csrf, 403, "Monitor only"),
        (without_csrf, 403, "X-Requested-With"),
    ] {
        let mut s = TcpStream::connect(site.addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&body).await.unwrap();
        // Give the portal time to answer and close before the client reads.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = read_response(&mut s, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("the answer ({says}) was lost"));
        assert_eq!(r.status, status, "{r:?}");
        assert!(r.text.contains(says), "{r:?}");
    }
    // The same as an HTTP library sends it, which writes the whole body before it reads
    // the answer and stops at the first failed write.
    let c = reqwest::Client::new();
    let url = format!("{}{path}", site.url);
    for i in 0..40 {
        let r = c
            .post(&url)
            .header("Cookie", &monitor)
            .body(body.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("upload {i}: the answer was lost: {e:?}"));
        assert_eq!(r.status(), 403);
    }
    assert_eq!(site.app.uploads_in_use(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upload_limit_is_the_gx_staging_limit_and_is_advertised() {
    // The portal's default is the GX daemon's default staging limit.
    let gx_limit = bmsfw_core::config::StagingConfig::default().max_package_bytes;
    assert_eq!(gx_limit, 16 * MIB);
    assert_eq!(WebSettings::default().max_upload_bytes, gx_limit);
    assert_eq!(
        bmsfw_portal::config::PortalConfig::default().max_upload_bytes,
        gx_limit
    );
    let shipped = bmsfw_portal::config::PortalConfig::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/portal.toml"
    )))
    .unwrap();
    assert_eq!(shipped.max_upload_bytes, gx_limit);

    let site = Site::start(settings(), true).await;
    // The page reads the limit before anyone logs in.
    let limits: Value = reqwest::get(format!("{}/api/limits", site.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(limits["max_upload_bytes"], gx_limit);
    assert_eq!(limits["max_upload_label"], "16 MiB");
    assert_eq!(limits["max_uploads_per_user"], 2);
    assert_eq!(limits["max_uploads_total"], 4);
    assert_eq!(limits["max_file_name_bytes"], 255);

    let c = http();
    assert_eq!(login(&c, &site.url, FULL).await, StatusCode::OK);
    let upload = |bytes: Vec<u8>| {
        c.post(format!("{}/firmware?name=fw.bin", site.battery(512)))
            .header(CSRF_HEADER.0, CSRF_HEADER.1)
            .body(bytes)
            .send()
    };
    // Exactly the limit is accepted; one byte more is refused with the limit in words.
    let r = upload(package(7, 1, gx_limit as usize, 3)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let f: Value = r.json().await.unwrap();
    assert_eq!(f["size"], gx_limit);
    // One byte more is refused with the limit in words, before the body (a client
    // sending it anyway finds the connection closed).
    let cookie = session(&site.url, FULL).await;
    let path = Site::upload_path(512, "fw.bin");
    let mut s = TcpStream::connect(site.addr).await.unwrap();
    s.write_all(upload_head(site.addr, &path, Some(&cookie), Some(gx_limit + 1)).as_bytes())
        .await
        .unwrap();
    let r = read_response(&mut s, Duration::from_secs(5))
        .await
        .expect("no answer");
    assert_eq!(r.status, 413, "{r:?}");
    let e: Value = serde_json::from_str(&r.text).unwrap();
    assert_eq!(
        e["error"],
        "the file is 16.0 MiB (16777217 bytes); the GX device accepts firmware files of at \
         most 16 MiB (16777216 bytes)",
        "{e}"
    );

    // Without a declared length, the portal stops at the limit.
    let mut s = TcpStream::connect(site.addr).await.unwrap();
    s.write_all(
        upload_head(
            site.addr,
            &Site::upload_path(512, "fw.bin"),
            Some(&cookie),
            None,
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (answer, sent) = send_body_watching(s, 60 * MIB, true).await;
    println!(
        "chunked 60 MiB upload: answered after the client could send {} KiB",
        sent / 1024
    );
    let answer = answer.expect("no answer");
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(answer.text.contains("larger than 16 MiB"), "{answer:?}");
    assert!(sent < 40 * MIB, "the client sent {sent} bytes");
}

/// Opens an upload of 1 MiB and sends its first KiB, then holds it.
async fn hold_upload(site: &Site, cookie: &str) -> TcpStream {
    let mut s = TcpStream::connect(site.addr).await.unwrap();
    s.write_all(
        upload_head(
            site.addr,
            &Site::upload_path(512, "slow.bin"),
            Some(cookie),
            Some(MIB),
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    s.write_all(&[0u8; 1024]).await.unwrap();
    s
}

async fn until_uploads(site: &Site, n: usize) {
    let deadline = Instant::now() + WAIT;
    while site.app.uploads_in_use() != n {
        assert!(
            Instant::now() < deadline,
            "{} uploads under way, not {n}",
            site.app.uploads_in_use()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_at_once_are_bounded_per_user_and_in_all() {
    let site = Site::start(
        WebSettings {
            max_uploads_per_user: 2,
            max_uploads_total: 3,
            ..settings()
        },
        true,
    )
    .await;
    let ann = session(&site.url, FULL).await;
    let bob = session(&site.url, FULL2).await;
    let upload = |cookie: String| {
        let url = site.battery(512);
        async move {
            let r = http()
                .post(format!("{url}/firmware?name=fw.bin"))
                .header(CSRF_HEADER.0, CSRF_HEADER.1)
                .header("cookie", cookie)
                .body(package(7, 1, 5000, 1))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            (
                status,
                body["error"].as_str().unwrap_or_default().to_owned(),
            )
        }
    };

    let a1 = hold_upload(&site, &ann).await;
    let _a2 = hold_upload(&site, &ann).await;
    until_uploads(&site, 2).await;
    let (status, error) = upload(ann.clone()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        error.contains("you are uploading 2 file(s) already"),
        "{error}"
    );

    let _b1 = hold_upload(&site, &bob).await;
    until_uploads(&site, 3).await;
    let (status, error) = upload(bob.clone()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(error.contains("receiving 3 uploads"), "{error}");

    // A client that goes away frees its slot.
    drop(a1);
    until_uploads(&site, 2).await;
    let (status, error) = upload(bob.clone()).await;
    assert_eq!(status, StatusCode::OK, "{error}");
    assert_eq!(site.app.uploads_in_use(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_answered_or_dropped_in_time() {
    let site = Site::start(
        WebSettings {
            header_timeout: Duration::from_secs(2),
            body_idle_timeout: Duration::from_secs(2),
            body_timeout: Duration::from_secs(4),
            ..settings()
        },
        true,
    )
    .await;
    let bound = Duration::from_secs(6);

    // Half a request head, then silence; a connection that says nothing at all.
    let mut half = TcpStream::connect(site.addr).await.unwrap();
    half.write_all(b"POST /api/login HTTP/1.1\r\nHost: portal\r\nContent-Ty")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(site.addr).await.unwrap();
    let (took, _) = until_closed(&mut half, bound).await;
    println!("half a head: closed after {took:?}");
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    let (took, _) = until_closed(&mut silent, bound).await;
    println!("silent connection: closed after {took:?}");

    // A whole head and part of the body, then silence: 408, and the connection closes.
    let mut s = TcpStream::connect(site.addr).await.unwrap();
    s.write_all(
        b"POST /api/login HTTP/1.1\r\nHost: portal\r\nX-Requested-With: bmsfw\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"username\"",
    )
    .await
    .unwrap();
    let start = Instant::now();
    let r = read_response(&mut s, bound).await.expect("no answer");
    println!("half a body: {} after {:?}", r.status, start.elapsed());
    assert_eq!(r.status, 408, "{r:?}");
    until_closed(&mut s, bound).await;

    // A body that trickles in, a byte every 0.5 s, is stopped at the whole-body limit.
    let mut s = TcpStream::connect(site.addr).await.unwrap();
    s.write_all(
        b"POST /api/login HTTP/1.1\r\nHost: portal\r\nX-Requested-With: bmsfw\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n",
    )
    .await
    .unwrap();
    let start = Instant::now();
    let (mut rd, mut wr) = s.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            if wr.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let r = read_response(&mut rd, Duration::from_secs(10))
        .await
        .expect("no answer");
    let took = start.elapsed();
    println!("trickled body: {} after {took:?}", r.status);
    assert_eq!(r.status, 408, "{r:?}");
    assert!(took < Duration::from_secs(7), "{took:?}");
    trickle.abort();

    // A stalled upload: 408 and its slot is free again.
    let cookie = session(&site.url, FULL).await;
    let mut s = hold_upload(&site, &cookie).await;
    let r = read_response(&mut s, bound).await.expect("no answer");
    assert_eq!(r.status, 408, "{r:?}");
    assert!(r.text.contains("did not arrive in time"), "{r:?}");
    until_uploads(&site, 0).await;

    // An ordinary client on a kept-alive connection is not disturbed.
    let c = http();
    assert_eq!(login(&c, &site.url, FULL).await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = c
        .get(format!("{}/api/state", site.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

/// Runs `bmsfw args` that must fail at once; returns its standard error.
fn fails_at_once(args: &[&str]) -> String {
    let mut child = bmsfw_binary()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(!status.success(), "bmsfw {args:?} succeeded");
            assert!(!err.contains("panicked"), "{err}");
            return err;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("bmsfw {args:?} kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn portal_and_demo_files_out_of_range_or_not_utf8_are_refused_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/portal.toml"))
            .unwrap();
    let port = free_port();
    let shipped = shipped
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:1883", &format!("127.0.0.1:{}", free_port()));
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_string_lossy().into_owned()
    };
    let line_of = |text: &str, needle: &str| {
        text.lines()
            .position(|l| l.starts_with(needle))
            .map(|i| i + 1)
            .unwrap()
    };

    // session_hours = 2^63 - 1 is refused where it is written, without a panic.
    let text = shipped.replace("session_hours = 12", "session_hours = 9223372036854775807");
    let p = write("huge.toml", text.as_bytes());
    let err = fails_at_once(&["portal", "--config", &p]);
    let line = line_of(&text, "session_hours");
    assert!(
        err.contains(&format!(
            "huge.toml:{line}:17: session_hours must be between 1 and 720, is 9223372036854775807"
        )),
        "{err}"
    );

    // An empty file, or one without users.
    let p = write("empty.toml", b"");
    let err = fails_at_once(&["portal", "--config", &p]);
    assert!(err.contains("empty.toml:1:1: no [[users]]"), "{err}");
    let text = shipped[..shipped.find("[[users]]").unwrap()].to_owned();
    let p = write("nousers.toml", text.as_bytes());
    let err = fails_at_once(&["portal", "--config", &p]);
    assert!(err.contains("nousers.toml:1:1: no [[users]]"), "{err}");

    // A listen address without a port, a cost beyond the bound.
    let text = shipped.replace(&format!("127.0.0.1:{port}"), "127.0.0.1:0");
    let p = write("port0.toml", text.as_bytes());
    let err = fails_at_once(&["portal", "--config", &p]);
    assert!(
        err.contains(&format!(
            "port0.toml:{}:10: listen needs a port",
            line_of(&text, "listen")
        )),
        "{err}"
    );
    let text = shipped.replacen("$argon2id$v=19$m=19456", "$argon2id$v=19$m=2097152", 1);
    let p = write("costly.toml", text.as_bytes());
    let err = fails_at_once(&["portal", "--config", &p]);
    assert!(err.contains("memory cost m=2097152 KiB"), "{err}");
    assert!(
        err.contains(&format!(
            "costly.toml:{}:17:",
            line_of(&text, "password_hash")
        )),
        "{err}"
    );

    // Invalid UTF-8 in portal.toml and in the demo's site file.
    let mut bytes = shipped.clone().into_bytes();
    let at = shipped.find("Demo site").unwrap() + 2;
    bytes[at] = 0xC3;
    bytes[at + 1] = 0x28;
    let p = write("latin.toml", &bytes);
    let err = fails_at_once(&["portal", "--config", &p]);
    let line = line_of(&shipped, "name = \"Demo site\"");
    assert!(
        err.contains(&format!(
            "latin.toml:{line}:11: the file is not UTF-8 text (byte 0xC3)"
        )),
        "{err}"
    );
    let demo =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml")).unwrap();
    let mut bytes = demo.clone().into_bytes();
    let at = demo.find("name = \"").unwrap() + 8;
    bytes[at] = 0xFF;
    let site = write("site.toml", &bytes);
    let line = demo[..at].matches('\n').count() + 1;
    let portal = write("ok.toml", shipped.as_bytes());
    let err = fails_at_once(&["demo", "--site", &site, "--portal-config", &portal]);
    assert!(
        err.contains(&format!(
            "site.toml:{line}:9: the file is not UTF-8 text (byte 0xFF)"
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_names_with_hidden_characters_are_shown_marked() {
    let site = Site::start(settings(), true).await;
    let c = http();
    assert_eq!(login(&c, &site.url, FULL).await, StatusCode::OK);
    for (name, shown) in [
        ("invoice\u{202E}nib.exe", "invoice[U+202E]nib.exe"),
        ("fw\u{7}\u{1b}[2J.bin", "fw[U+0007][U+001B][2J.bin"),
        ("a\u{2066}b\u{200B}c.bin", "a[U+2066]b[U+200B]c.bin"),
    ] {
        let r = c
            .post(format!("{}/firmware", site.battery(512)))
            .query(&[("name", name)])
            .header(CSRF_HEADER.0, CSRF_HEADER.1)
            .body(package(7, 1, 3000, 1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let f: Value = r.json().await.unwrap();
        assert_eq!(f["name"], shown);
        let text = c
            .get(format!("{}/api/state", site.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let state: Value = serde_json::from_str(&text).unwrap();
        let battery = &state["installations"][0]["batteries"][0];
        assert_eq!(battery["pending_file"]["name"], shown);
        assert!(
            !text.chars().any(bmsfw_portal::web::safe_text::is_hidden),
            "{text}"
        );
    }

    // A name as a GX publishes it is marked as well.
    let raw = RawClient::connect_as(&site.broker.addr(), PORTAL_ID, &["N/#"]).await;
    let prefix = format!("N/{PORTAL_ID}/battery/512/FirmwareUpdate");
    raw.publish(&format!("{prefix}/Job"), json!({"value": 41}).to_string())
        .await;
    raw.publish(
        &format!("{prefix}/State"),
        json!({"value": "completed"}).to_string(),
    )
    .await;
    raw.publish(
        &format!("{prefix}/FileName"),
        json!({"value": "gx\u{202E}nib.exe"}).to_string(),
    )
    .await;
    let deadline = Instant::now() + WAIT;
    loop {
        let state: Value = c
            .get(format!("{}/api/state", site.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let u = &state["installations"][0]["batteries"][0]["latest_update"];
        if u["job"] == 41 && !u["file_name"].is_null() {
            assert_eq!(u["file_name"], "gx[U+202E]nib.exe", "{u}");
            break;
        }
        assert!(Instant::now() < deadline, "the GX's name never showed: {u}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_battery_that_does_not_exist_is_not_found() {
    let site = Site::start(settings(), true).await;
    let c = http();
    assert_eq!(login(&c, &site.url, FULL).await, StatusCode::OK);
    let acks =
        json!({"acknowledgements": ["site_reachable", "backup_capacity", "maintenance_window"]});
    for path in ["update", "retry"] {
        let r = c
            .post(format!("{}/{path}", site.battery(999)))
            .header(CSRF_HEADER.0, CSRF_HEADER.1)
            .json(&acks)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(
            e["error"],
            format!("no battery 999 on {PORTAL_ID}"),
            "{path}"
        );
    }
    let r = c
        .post(format!("{}/firmware?name=fw.bin", site.battery(999)))
        .header(CSRF_HEADER.0, CSRF_HEADER.1)
        .body(package(7, 1, 3000, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = c
        .get(format!("{}/events", site.battery(999)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // An upload to a missing battery is refused before its body.
    let cookie = session(&site.url, FULL).await;
    let mut s = TcpStream::connect(site.addr).await.unwrap();
    s.write_all(
        upload_head(
            site.addr,
            &Site::upload_path(999, "fw.bin"),
            Some(&cookie),
            Some(MIB),
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let r = read_response(&mut s, Duration::from_secs(5)).await.unwrap();
    assert_eq!(r.status, 404, "{r:?}");
    // The battery that exists still asks for its file first.
    let r = c
        .post(format!("{}/update", site.battery(512)))
        .header(CSRF_HEADER.0, CSRF_HEADER.1)
        .json(&acks)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("upload the firmware file first"),
        "{e}"
    );
}

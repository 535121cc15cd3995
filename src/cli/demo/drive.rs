//! `bmsfw demo --run`: an installer without a browser. Logs in to the portal, uploads
//! every sample file through its HTTP API, confirms the manual's warnings, presses
//! Update, and follows each battery through its states to the end.

use super::Target;
use anyhow::{Context, bail};
use bmsfw_vrm_wire::JobState;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;
use tokio::time::Instant;

/// The header every state-changing request carries (the portal's CSRF guard).
const CSRF: (&str, &str) = ("X-Requested-With", "bmsfw");
/// How often the portal's state is read.
const POLL: Duration = Duration::from_millis(250);
/// How long the batteries may take to appear, updatable, in the portal.
const APPEAR: Duration = Duration::from_secs(90);

/// Who logs in.
pub struct Login {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

#[derive(Deserialize)]
struct StateJson {
    installations: Vec<InstallationJson>,
}

#[derive(Deserialize)]
struct InstallationJson {
    portal_id: String,
    batteries: Vec<BatteryJson>,
}

#[derive(Deserialize, Clone)]
struct BatteryJson {
    instance: u32,
    serial: Option<String>,
    firmware_version: Option<String>,
    can_update: bool,
    update_blocked: Option<String>,
    latest_update: Option<UpdateJson>,
}

#[derive(Deserialize, Clone)]
struct UpdateJson {
    commandid: Option<String>,
    state: Option<JobState>,
    #[serde(default)]
    states_seen: Vec<JobState>,
    percent: Option<u8>,
    error_code: Option<u32>,
    error: Option<String>,
    version_before: Option<VersionJson>,
    version_after: Option<VersionJson>,
    ended: bool,
    #[serde(default)]
    caught_up: bool,
    #[serde(default)]
    modules: Vec<ModuleJson>,
}

#[derive(Deserialize, Clone)]
struct VersionJson {
    display: String,
}

#[derive(Deserialize, Clone)]
struct ModuleJson {
    index: u16,
    state_label: Option<String>,
}

/// How one battery's update ended.
pub struct Outcome {
    name: String,
    vendor: String,
    before: String,
    after: String,
    result: Result<(), String>,
    took: Duration,
}

/// Every battery's outcome.
pub struct Summary(Vec<Outcome>);

impl Summary {
    /// Whether every update completed.
    pub fn all_completed(&self) -> bool {
        self.0.iter().all(|o| o.result.is_ok())
    }
}

/// One battery being followed.
struct Followed<'a> {
    target: &'a Target,
    instance: u32,
    before: String,
    commandid: String,
    started: Instant,
    bar: ProgressBar,
    /// How many of the update's states have been printed.
    printed: usize,
    outcome: Option<Outcome>,
}

fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")
}

async fn state(
    c: &reqwest::Client,
    url: &str,
    portal_id: &str,
) -> anyhow::Result<Vec<BatteryJson>> {
    let r = c
        .get(format!("{url}/api/state"))
        .send()
        .await
        .context("reading the portal's state")?;
    let status = r.status();
    if !status.is_success() {
        bail!("the portal answered {status} to GET /api/state");
    }
    let s: StateJson = r.json().await.context("reading the portal's state")?;
    Ok(s.installations
        .into_iter()
        .find(|i| i.portal_id == portal_id)
        .map(|i| i.batteries)
        .unwrap_or_default())
}

async fn post(
    c: &reqwest::Client,
    url: String,
    body: reqwest::Body,
    json: bool,
) -> anyhow::Result<()> {
    let mut req = c.post(&url).header(CSRF.0, CSRF.1).body(body);
    if json {
        req = req.header("Content-Type", "application/json");
    }
    let r = req.send().await.with_context(|| format!("POST {url}"))?;
    let status = r.status();
    if !status.is_success() {
        let text = r.text().await.unwrap_or_default();
        bail!("POST {url}: {status}: {text}");
    }
    Ok(())
}

/// Uploads each target's file and starts its update through the portal at `url`, then
/// follows them all to the end (at most `timeout`). Prints a summary table.
pub async fn run_updates(
    url: &str,
    portal_id: &str,
    login: &Login,
    targets: &[Target],
    timeout: Duration,
) -> anyhow::Result<Summary> {
    let c = client()?;
    let body = serde_json::json!({"username": login.user, "password": login.password});
    post(
        &c,
        format!("{url}/api/login"),
        body.to_string().into(),
        true,
    )
    .await
    .context("logging in to the portal")?;
    outln!("logged in to {url} as {}", login.user);

    // Wait until the portal lists every battery as updatable.
    let appear = APPEAR.min(timeout);
    let deadline = Instant::now() + appear;
    let found = loop {
        let batteries = state(&c, url, portal_id).await?;
        let found: Vec<Option<BatteryJson>> = targets
            .iter()
            .map(|t| {
                batteries
                    .iter()
                    .find(|b| b.serial.as_deref() == Some(t.serial.as_str()))
                    .cloned()
            })
            .collect();
        if found
            .iter()
            .all(|b| b.as_ref().is_some_and(|b| b.can_update))
        {
            break found.into_iter().flatten().collect::<Vec<_>>();
        }
        if Instant::now() >= deadline {
            let why: Vec<String> = targets
                .iter()
                .zip(&found)
                .filter(|(_, b)| !b.as_ref().is_some_and(|b| b.can_update))
                .map(|(t, b)| match b {
                    None => format!(
                        "{} ({}) is not in the portal's device list",
                        t.name, t.serial
                    ),
                    Some(b) => format!(
                        "{} cannot be updated: {}",
                        t.name,
                        b.update_blocked.as_deref().unwrap_or("no reason given")
                    ),
                })
                .collect();
            bail!("after {} s: {}", appear.as_secs(), why.join("; "));
        }
        tokio::time::sleep(POLL).await;
    };

    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let lines = !std::io::stderr().is_terminal();
    let style = ProgressStyle::with_template("{prefix:<10} [{bar:30.cyan/blue}] {pos:>3}% {msg}")
        .context("the progress bar's template")?
        .progress_chars("=> ");
    let mut followed = Vec::new();
    for (t, b) in targets.iter().zip(found) {
        let path = format!(
            "{url}/api/installations/{portal_id}/batteries/{}",
            b.instance
        );
        let name = t
            .file
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let bytes =
            std::fs::read(&t.file).with_context(|| format!("reading {}", t.file.display()))?;
        post(
            &c,
            format!("{path}/firmware?name={name}"),
            bytes.into(),
            false,
        )
        .await
        .with_context(|| format!("uploading {name} for {}", t.name))?;
        let ack = serde_json::json!({
            "acknowledgements": ["site_reachable", "backup_capacity", "maintenance_window"]
        });
        post(&c, format!("{path}/update"), ack.to_string().into(), true)
            .await
            .with_context(|| format!("starting the update of {}", t.name))?;
        let bar = multi.add(ProgressBar::new(100));
        bar.set_style(style.clone());
        bar.set_prefix(t.name.clone());
        bar.set_message(format!("{name}: requested"));
        if lines {
            outln!("{}: {name} uploaded to the portal, Update pressed", t.name);
        }
        followed.push(Followed {
            target: t,
            instance: b.instance,
            before: b.firmware_version.clone().unwrap_or_else(|| "?".into()),
            commandid: String::new(),
            started: Instant::now(),
            bar,
            printed: 0,
            outcome: None,
        });
    }

    let deadline = Instant::now() + timeout;
    while followed.iter().any(|f| f.outcome.is_none()) {
        tokio::time::sleep(POLL).await;
        let batteries = state(&c, url, portal_id).await?;
        let by_instance: BTreeMap<u32, &BatteryJson> =
            batteries.iter().map(|b| (b.instance, b)).collect();
        for f in followed.iter_mut().filter(|f| f.outcome.is_none()) {
            let Some(u) = by_instance
                .get(&f.instance)
                .and_then(|b| b.latest_update.as_ref())
            else {
                continue;
            };
            if f.commandid.is_empty() {
                f.commandid = u.commandid.clone().unwrap_or_default();
            }
            if u.commandid.as_deref() != Some(f.commandid.as_str()) {
                continue;
            }
            follow(f, u, lines);
        }
        if Instant::now() >= deadline {
            for f in followed.iter_mut().filter(|f| f.outcome.is_none()) {
                f.bar.abandon_with_message("timed out");
                f.outcome = Some(Outcome {
                    name: f.target.name.clone(),
                    vendor: f.target.vendor.clone(),
                    before: f.before.clone(),
                    after: "?".into(),
                    result: Err(format!("not ended after {} s", timeout.as_secs())),
                    took: f.started.elapsed(),
                });
            }
        }
    }
    let summary = Summary(followed.into_iter().filter_map(|f| f.outcome).collect());
    print_summary(&summary);
    Ok(summary)
}

/// Takes the portal's view of `f`'s update into its bar, and its outcome at the end.
fn follow(f: &mut Followed<'_>, u: &UpdateJson, lines: bool) {
    let Some(state) = u.state else {
        return;
    };
    let percent = u.percent.unwrap_or(0).min(100);
    let modules: Vec<String> = u
        .modules
        .iter()
        .map(|m| format!("#{} {}", m.index, m.state_label.as_deref().unwrap_or("?")))
        .collect();
    let mut msg = state.label().to_owned();
    if !modules.is_empty() {
        msg = format!("{msg} (modules: {})", modules.join(", "));
    }
    f.bar.set_position(u64::from(percent));
    f.bar.set_message(msg.clone());
    // Every state the update passed, even one shorter than a poll of the portal.
    for passed in u.states_seen.iter().skip(f.printed) {
        let line = if *passed == state {
            msg.clone()
        } else {
            passed.label().to_owned()
        };
        if lines {
            outln!("{}: {line}", f.target.name);
        } else {
            f.bar.println(format!("{}: {line}", f.target.name));
        }
    }
    f.printed = f.printed.max(u.states_seen.len());
    if !(u.ended && u.caught_up) {
        return;
    }
    let version = |v: &Option<VersionJson>| v.as_ref().map(|v| v.display.clone());
    let before = version(&u.version_before).unwrap_or_else(|| f.before.clone());
    let after = version(&u.version_after).unwrap_or_else(|| "?".into());
    let result = if state == JobState::Completed {
        f.bar
            .finish_with_message(format!("Completed: {before} -> {after}"));
        Ok(())
    } else {
        let why = match (u.error_code, &u.error) {
            (Some(code), Some(e)) => format!("error {code}: {e}"),
            (Some(code), None) => format!("error {code}"),
            (None, Some(e)) => e.clone(),
            (None, None) => state.label().to_owned(),
        };
        f.bar.abandon_with_message(format!("Failed: {why}"));
        Err(why)
    };
    if lines {
        match &result {
            Ok(()) => outln!("{}: completed, {before} -> {after}", f.target.name),
            Err(why) => outln!("{}: failed, {why}", f.target.name),
        }
    }
    f.outcome = Some(Outcome {
        name: f.target.name.clone(),
        vendor: f.target.vendor.clone(),
        before,
        after,
        result,
        took: f.started.elapsed(),
    });
}

fn print_summary(summary: &Summary) {
    let width = |f: fn(&Outcome) -> usize, title: &str| {
        summary.0.iter().map(f).max().unwrap_or(0).max(title.len())
    };
    let wn = width(|o| o.name.len(), "battery");
    let wv = width(|o| o.vendor.len(), "vendor");
    let wb = width(|o| o.before.len(), "before");
    let wa = width(|o| o.after.len(), "after");
    outln!();
    outln!(
        "{:<wn$}  {:<wv$}  {:<wb$}  {:<wa$}  {:>8}  result",
        "battery",
        "vendor",
        "before",
        "after",
        "time"
    );
    for o in &summary.0 {
        let result = match &o.result {
            Ok(()) => "completed".to_owned(),
            Err(why) => format!("FAILED: {why}"),
        };
        outln!(
            "{:<wn$}  {:<wv$}  {:<wb$}  {:<wa$}  {:>7.1}s  {result}",
            o.name,
            o.vendor,
            o.before,
            o.after,
            o.took.as_secs_f64()
        );
    }
    let failed = summary.0.iter().filter(|o| o.result.is_err()).count();
    outln!(
        "{} of {} updates completed{}",
        summary.0.len() - failed,
        summary.0.len(),
        if failed > 0 {
            format!(", {failed} failed")
        } else {
            String::new()
        }
    );
}

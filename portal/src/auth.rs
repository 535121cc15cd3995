//! Users, passwords and sessions.
//!
//! Passwords are kept only as argon2id hashes (PHC strings); session tokens are 256 random
//! bits handed to the browser once, and the portal keeps only their SHA-256, so neither a
//! leaked configuration nor a memory dump of the session table lets anyone log in.
//!
//! Access levels follow VRM: **Full control** may upload firmware and start updates;
//! **Monitor only** sees everything and can start nothing.

use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccessLevel {
    /// Sees everything and may upload firmware and start updates.
    FullControl,
    /// Sees everything and can start nothing.
    MonitorOnly,
}

impl AccessLevel {
    /// The label VRM shows.
    pub const fn label(self) -> &'static str {
        match self {
            AccessLevel::FullControl => "Full control",
            AccessLevel::MonitorOnly => "Monitor only",
        }
    }
}

/// One user as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    /// The login name.
    pub name: String,
    /// The argon2id hash of the password, as a PHC string (`bmsfw portal hash-password`).
    pub password_hash: String,
    /// What the user may do.
    pub access: AccessLevel,
    /// The portal ids of the installations the user sees; `"*"` means all.
    pub installations: Vec<String>,
}

impl UserRecord {
    /// Whether the user sees installation `portal_id`.
    pub fn sees(&self, portal_id: &str) -> bool {
        self.installations
            .iter()
            .any(|i| i == "*" || i == portal_id)
    }
}

/// Why a password could not be hashed or a user list is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// A stored hash is not a valid PHC string.
    #[error("user {user:?}: password_hash is not an argon2 PHC string: {reason}")]
    BadHash {
        /// The user.
        user: String,
        /// What was wrong.
        reason: String,
    },
    /// Two users share a name.
    #[error("user {0:?} is listed twice")]
    Duplicate(String),
}

/// Hashes `password` with argon2id, the default parameters and a random salt.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| AuthError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Most memory one password check may use, in KiB (argon2's `m`): 64 MiB, which admits
/// both of RFC 9106's recommended settings. Every hash worker keeps at most this much.
pub const ARGON2_MAX_MEMORY_KIB: u32 = 64 * 1024;
/// Most passes over the memory (argon2's `t`).
pub const ARGON2_MAX_TIME_COST: u32 = 16;
/// Most lanes (argon2's `p`).
pub const ARGON2_MAX_LANES: u32 = 8;

/// Checks that `hash` is an argon2id PHC string (version 19) with a salt, a hash and a
/// cost within [`ARGON2_MAX_MEMORY_KIB`], [`ARGON2_MAX_TIME_COST`] and
/// [`ARGON2_MAX_LANES`]; returns its parameters.
pub fn check_hash(hash: &str) -> Result<Params, String> {
    let parsed = PasswordHash::new(hash).map_err(|e| format!("not an argon2 PHC string: {e}"))?;
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        return Err(format!(
            "the algorithm is {}; only argon2id is accepted",
            parsed.algorithm
        ));
    }
    if parsed.version.is_some_and(|v| v != 0x13) {
        return Err("only argon2 version 19 (v=19) is accepted".into());
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err("the salt or the hash is missing".into());
    }
    let params = Params::try_from(&parsed).map_err(|e| format!("its parameters: {e}"))?;
    if params.m_cost() > ARGON2_MAX_MEMORY_KIB {
        return Err(format!(
            "memory cost m={} KiB is above the {ARGON2_MAX_MEMORY_KIB} KiB the portal allows",
            params.m_cost()
        ));
    }
    if params.t_cost() > ARGON2_MAX_TIME_COST {
        return Err(format!(
            "time cost t={} is above the {ARGON2_MAX_TIME_COST} the portal allows",
            params.t_cost()
        ));
    }
    if params.p_cost() > ARGON2_MAX_LANES {
        return Err(format!(
            "parallelism p={} is above the {ARGON2_MAX_LANES} the portal allows",
            params.p_cost()
        ));
    }
    Ok(params)
}

/// argon2 buffers are reserved at least this large (32 MiB and one block; only the blocks a
/// hash uses are ever touched) so that the C allocator maps each on its own and unmaps it
/// when it is dropped. Smaller, it may serve them from a thread's arena after an earlier
/// large buffer was freed, and keep them there.
const OWN_MAPPING_BLOCKS: usize = 32 * 1024 + 1;

/// Whether `password` matches `hash`, computed in `memory` (grown to the hash's size if
/// smaller, never shrunk), so that a hash worker reuses one buffer instead of allocating
/// one per check. The comparison takes constant time.
fn verify_in(hash: &str, password: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let Ok(version) = parsed.version.map_or(Ok(Version::V0x13), Version::try_from) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        if memory.capacity() < blocks {
            *memory = Vec::with_capacity(blocks.max(OWN_MAPPING_BLOCKS));
        }
        memory.resize(blocks, Block::default());
    }
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    Argon2::new(Algorithm::Argon2id, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut memory[..blocks])
        .is_ok()
        && Output::new(out).is_ok_and(|o| o == expected)
}

/// The configured users.
#[derive(Debug, Clone)]
pub struct Users {
    by_name: HashMap<String, UserRecord>,
    /// Verified against when the name is unknown, so both cases take the same time.
    decoy: String,
    /// The memory of the most demanding hash, in KiB.
    memory_kib: u32,
}

impl Users {
    /// Checks every hash ([`check_hash`]) and that names are unique.
    pub fn new(records: Vec<UserRecord>) -> Result<Users, AuthError> {
        let decoy = hash_password("decoy password for unknown users")?;
        let mut memory_kib = check_hash(&decoy).map_err(AuthError::Hash)?.m_cost();
        let mut by_name = HashMap::new();
        for r in records {
            let params = check_hash(&r.password_hash).map_err(|reason| AuthError::BadHash {
                user: r.name.clone(),
                reason,
            })?;
            memory_kib = memory_kib.max(params.m_cost());
            if by_name.contains_key(&r.name) {
                return Err(AuthError::Duplicate(r.name));
            }
            by_name.insert(r.name.clone(), r);
        }
        Ok(Users {
            by_name,
            decoy,
            memory_kib,
        })
    }

    /// The user `name` if `password` is theirs.
    pub fn verify(&self, name: &str, password: &str) -> Option<&UserRecord> {
        self.verify_in(name, password, &mut Vec::new())
    }

    /// [`Users::verify`] with argon2's memory in `memory`.
    fn verify_in(
        &self,
        name: &str,
        password: &str,
        memory: &mut Vec<Block>,
    ) -> Option<&UserRecord> {
        let record = self.by_name.get(name);
        let hash = record.map_or(self.decoy.as_str(), |r| r.password_hash.as_str());
        let ok = verify_in(hash, password, memory);
        record.filter(|_| ok)
    }

    /// Whether `name` is a configured user.
    pub fn is_known(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The memory one password check needs at most, in KiB.
    pub fn memory_kib(&self) -> u32 {
        self.memory_kib
    }

    /// The user `name`.
    pub fn get(&self, name: &str) -> Option<&UserRecord> {
        self.by_name.get(name)
    }
}

/// A logged-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The user's name.
    pub user: String,
    /// What the user may do.
    pub access: AccessLevel,
    expires: Instant,
}

/// Most sessions kept at once; the oldest goes beyond.
const MAX_SESSIONS: usize = 10_000;

/// Keeps sessions across a restart of the portal (the portal's store): told of every
/// session opened and ended, by the SHA-256 of its token (never the token).
pub trait SessionJournal: Send + Sync + std::fmt::Debug {
    /// Session `token_sha256` opened for `user` until `expires_at` (ms since the epoch).
    fn opened(&self, token_sha256: &[u8; 32], user: &str, access: AccessLevel, expires_at: u64);
    /// Session `token_sha256` ended.
    fn closed(&self, token_sha256: &[u8; 32]);
}

/// The sessions, keyed by the SHA-256 of their token.
#[derive(Debug)]
pub struct Sessions {
    by_hash: Mutex<HashMap<[u8; 32], Session>>,
    lifetime: Duration,
    journal: Option<std::sync::Arc<dyn SessionJournal>>,
}

/// The wall clock now, in ms since the epoch.
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    /// Sessions that last `lifetime` from login.
    pub fn new(lifetime: Duration) -> Sessions {
        Sessions {
            by_hash: Mutex::new(HashMap::new()),
            lifetime,
            journal: None,
        }
    }

    /// Keeps every session opened or ended from now on in `journal`, and takes back the
    /// sessions it kept: (token hash, user, access, expiry in ms since the epoch).
    pub fn persist(
        &mut self,
        journal: std::sync::Arc<dyn SessionJournal>,
        kept: impl IntoIterator<Item = ([u8; 32], String, AccessLevel, u64)>,
    ) {
        let now = Instant::now();
        let now_ms = wall_ms();
        let mut map = self.lock();
        for (hash, user, access, expires_at) in kept {
            let left = Duration::from_millis(expires_at.saturating_sub(now_ms));
            if left.is_zero() || map.len() >= MAX_SESSIONS {
                continue;
            }
            let Some(expires) = now.checked_add(left.min(self.lifetime)) else {
                continue;
            };
            map.insert(
                hash,
                Session {
                    user,
                    access,
                    expires,
                },
            );
        }
        drop(map);
        self.journal = Some(journal);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.by_hash.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a session for `user` and returns its token (64 hex digits), which only the
    /// browser keeps.
    pub fn create(&self, user: &UserRecord) -> String {
        let bytes: [u8; 32] = rand::random();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
        {
            map.remove(&oldest);
            if let Some(j) = &self.journal {
                j.closed(&oldest);
            }
        }
        let hash = token_hash(&token);
        map.insert(
            hash,
            Session {
                user: user.name.clone(),
                access: user.access,
                expires: now + self.lifetime,
            },
        );
        if let Some(j) = &self.journal {
            let lifetime_ms = u64::try_from(self.lifetime.as_millis()).unwrap_or(u64::MAX);
            j.opened(
                &hash,
                &user.name,
                user.access,
                wall_ms().saturating_add(lifetime_ms),
            );
        }
        token
    }

    /// The live session of `token`.
    pub fn lookup(&self, token: &str) -> Option<Session> {
        if token.len() != 64 {
            return None;
        }
        let key = token_hash(token);
        let mut map = self.lock();
        match map.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Ends the session of `token`.
    pub fn remove(&self, token: &str) {
        let hash = token_hash(token);
        self.lock().remove(&hash);
        if let Some(j) = &self.journal {
            j.closed(&hash);
        }
    }

    /// Whether the table holds `token` in clear anywhere (it must not).
    #[cfg(test)]
    fn stores_plain(&self, token: &str) -> bool {
        self.lock()
            .keys()
            .any(|k| k.iter().map(|b| format!("{b:02x}")).collect::<String>() == token)
    }
}

/// Login attempts in a row, counted as they start, after which a user name is locked for
/// a while.
pub const MAX_FAILED_LOGINS: u32 = 5;
/// Login attempts, counted as they start, after which a source address is locked for a
/// while, whatever names it tries (a successful login does not reset it).
pub const MAX_FAILED_LOGINS_PER_ADDRESS: u32 = 20;
/// How long a user name or an address stays locked; after it, one attempt at a time.
pub const LOCKOUT: Duration = Duration::from_secs(30);
/// Quiet time after which the failures of a name or an address are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Most unknown user names and most source addresses tracked (guesses cannot grow the
/// tables without end; configured users are always tracked).
const MAX_TRACKED: usize = 4096;

/// Failures and attempts under way of one user name or one source address.
#[derive(Debug, Clone, Copy)]
struct Tally {
    failures: u32,
    in_flight: u32,
    last: Instant,
}

impl Tally {
    fn new(now: Instant) -> Tally {
        Tally {
            failures: 0,
            in_flight: 0,
            last: now,
        }
    }

    /// `Ok` when one more attempt may start at `now`, or how long to wait.
    fn admits(&self, limit: u32, now: Instant) -> Result<(), Duration> {
        let quiet = now.saturating_duration_since(self.last);
        let failures = if self.in_flight == 0 && quiet >= FORGET_AFTER {
            0
        } else {
            self.failures
        };
        if failures.saturating_add(self.in_flight) < limit {
            return Ok(());
        }
        if self.in_flight == 0 && quiet >= LOCKOUT {
            return Ok(());
        }
        Err(LOCKOUT.saturating_sub(quiet).max(Duration::from_secs(1)))
    }

    fn start(&mut self, now: Instant) {
        if self.in_flight == 0 && now.saturating_duration_since(self.last) >= FORGET_AFTER {
            self.failures = 0;
        }
        self.in_flight += 1;
    }

    fn end(&mut self, failed: bool, now: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if failed {
            self.failures = self.failures.saturating_add(1);
            self.last = now;
        }
    }
}

/// The key of a source address: IPv4 addresses as they are, IPv6 addresses by their /64
/// (one host usually holds a whole /64).
fn address_key(addr: Option<IpAddr>) -> IpAddr {
    match addr {
        None => IpAddr::from([0, 0, 0, 0]),
        Some(IpAddr::V4(a)) => IpAddr::V4(a),
        Some(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = a.segments();
                IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
            }
        },
    }
}

/// Removes the entry of `map` quiet the longest with nothing under way; `false` when every
/// entry has an attempt under way.
fn evict_one<K: Clone + Eq + std::hash::Hash>(map: &mut HashMap<K, Tally>) -> bool {
    let oldest = map
        .iter()
        .filter(|(_, t)| t.in_flight == 0)
        .min_by_key(|(_, t)| t.last)
        .map(|(k, _)| k.clone());
    match oldest {
        Some(k) => {
            map.remove(&k);
            true
        }
        None => false,
    }
}

#[derive(Debug, Default)]
struct Tallies {
    /// Configured users, always tracked.
    known: HashMap<String, Tally>,
    /// Names that are no user, at most [`MAX_TRACKED`].
    unknown: HashMap<String, Tally>,
    /// Source addresses, at most [`MAX_TRACKED`].
    addresses: HashMap<IpAddr, Tally>,
}

impl Tallies {
    fn names(&mut self, known: bool) -> &mut HashMap<String, Tally> {
        if known {
            &mut self.known
        } else {
            &mut self.unknown
        }
    }
}

/// Why a login attempt may not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// The user name failed too often; wait this long.
    User(Duration),
    /// The source address failed too often; wait this long.
    Address(Duration),
}

impl Throttled {
    /// How long to wait.
    pub fn wait(self) -> Duration {
        match self {
            Throttled::User(d) | Throttled::Address(d) => d,
        }
    }
}

/// Slows down password guessing, per user name and per source address. Every attempt is
/// counted when it starts, before its password is checked, so attempts made in parallel
/// cannot outrun the count: a name gets at most [`MAX_FAILED_LOGINS`] checks and an
/// address [`MAX_FAILED_LOGINS_PER_ADDRESS`], then each is locked for [`LOCKOUT`], after
/// which one attempt at a time may try again. A successful login clears its name's count.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    tallies: Mutex<Tallies>,
}

/// A login attempt under way: counted as a failure unless [`LoginAttempt::succeeded`] is
/// called (also when the request is abandoned).
#[derive(Debug)]
pub struct LoginAttempt<'a> {
    throttle: &'a LoginThrottle,
    name: String,
    known: bool,
    address: IpAddr,
    ended: bool,
}

/// How a login attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Failed,
    Succeeded,
    /// The password was not checked (the checker was busy).
    NotChecked,
}

impl LoginAttempt<'_> {
    /// The password was right.
    pub fn succeeded(mut self) {
        self.finish(Outcome::Succeeded);
    }

    /// The password could not be checked: the attempt does not count.
    pub fn not_checked(mut self) {
        self.finish(Outcome::NotChecked);
    }

    fn finish(&mut self, outcome: Outcome) {
        if !self.ended {
            self.ended = true;
            self.throttle
                .end(&self.name, self.known, self.address, outcome);
        }
    }
}

impl Drop for LoginAttempt<'_> {
    fn drop(&mut self) {
        self.finish(Outcome::Failed);
    }
}

impl LoginThrottle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tallies> {
        self.tallies.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts an attempt for user name `name` (`known`: a configured user) from `address`,
    /// or says why it may not start.
    pub fn begin(
        &self,
        name: &str,
        known: bool,
        address: Option<IpAddr>,
    ) -> Result<LoginAttempt<'_>, Throttled> {
        let address = address_key(address);
        let now = Instant::now();
        let mut t = self.lock();
        if let Some(tally) = t.names(known).get(name) {
            tally
                .admits(MAX_FAILED_LOGINS, now)
                .map_err(Throttled::User)?;
        }
        if let Some(tally) = t.addresses.get(&address) {
            tally
                .admits(MAX_FAILED_LOGINS_PER_ADDRESS, now)
                .map_err(Throttled::Address)?;
        }
        if !known && !t.unknown.contains_key(name) && t.unknown.len() >= MAX_TRACKED {
            // Unknown names protect nothing; the one quiet the longest makes room.
            evict_one(&mut t.unknown);
        }
        if !t.addresses.contains_key(&address)
            && t.addresses.len() >= MAX_TRACKED
            && !evict_one(&mut t.addresses)
        {
            return Err(Throttled::Address(LOCKOUT));
        }
        t.names(known)
            .entry(name.to_owned())
            .or_insert_with(|| Tally::new(now))
            .start(now);
        t.addresses
            .entry(address)
            .or_insert_with(|| Tally::new(now))
            .start(now);
        Ok(LoginAttempt {
            throttle: self,
            name: name.to_owned(),
            known,
            address,
            ended: false,
        })
    }

    fn end(&self, name: &str, known: bool, address: IpAddr, outcome: Outcome) {
        let now = Instant::now();
        let failed = outcome == Outcome::Failed;
        let mut t = self.lock();
        let names = t.names(known);
        if let Some(tally) = names.get_mut(name) {
            tally.end(failed, now);
            if outcome == Outcome::Succeeded {
                tally.failures = 0;
            }
            if tally.failures == 0 && tally.in_flight == 0 {
                names.remove(name);
            }
        }
        if let Some(tally) = t.addresses.get_mut(&address) {
            tally.end(failed, now);
            if tally.failures == 0 && tally.in_flight == 0 {
                t.addresses.remove(&address);
            }
        }
    }
}

/// Most password checks waiting for a worker; beyond, logins are refused at once as busy.
pub const PASSWORD_QUEUE: usize = 256;
/// How often a worker holding argon2 memory looks whether it is still needed.
const IDLE_CHECK: Duration = Duration::from_millis(500);

/// The password checker is busy: [`PASSWORD_QUEUE`] checks are waiting already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

struct Check {
    name: String,
    password: String,
    reply: tokio::sync::oneshot::Sender<Option<UserRecord>>,
}

/// What the workers share.
struct Queue {
    jobs: Mutex<std::sync::mpsc::Receiver<Check>>,
    /// Checks sent and not yet taken by a worker.
    waiting: AtomicUsize,
    /// Checks done.
    checks: AtomicU64,
}

/// Checks passwords on a fixed number of worker threads. Each worker has one argon2
/// buffer, reused while checks are waiting and given back to the system as soon as none
/// is (within [`IDLE_CHECK`]). However many logins arrive at once, argon2 never holds
/// more than `workers` times the largest hash's memory; the others wait in a bounded queue.
pub struct PasswordChecker {
    send: std::sync::mpsc::SyncSender<Check>,
    queue: Arc<Queue>,
}

impl std::fmt::Debug for PasswordChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordChecker")
            .field("checks", &self.checks())
            .finish_non_exhaustive()
    }
}

impl PasswordChecker {
    /// Starts `workers` (at least 1) threads checking against `users`. They end when the
    /// checker is dropped.
    pub fn start(users: Arc<Users>, workers: usize) -> PasswordChecker {
        let (send, jobs) = std::sync::mpsc::sync_channel::<Check>(PASSWORD_QUEUE);
        let queue = Arc::new(Queue {
            jobs: Mutex::new(jobs),
            waiting: AtomicUsize::new(0),
            checks: AtomicU64::new(0),
        });
        for n in 0..workers.max(1) {
            let queue = Arc::clone(&queue);
            let users = Arc::clone(&users);
            let spawned = std::thread::Builder::new()
                .name(format!("password-{n}"))
                .spawn(move || Self::work(&users, &queue));
            if let Err(e) = spawned {
                tracing::error!("cannot start a password worker: {e}");
            }
        }
        PasswordChecker { send, queue }
    }

    fn work(users: &Users, queue: &Queue) {
        use std::sync::mpsc::RecvTimeoutError;
        let mut memory: Vec<Block> = Vec::new();
        loop {
            if queue.waiting.load(Ordering::Acquire) == 0 {
                // Nothing waiting: give the memory back.
                memory = Vec::new();
            }
            let next = {
                let jobs = queue.jobs.lock().unwrap_or_else(|p| p.into_inner());
                if memory.is_empty() {
                    jobs.recv().map_err(|_| RecvTimeoutError::Disconnected)
                } else {
                    jobs.recv_timeout(IDLE_CHECK)
                }
            };
            match next {
                Ok(check) => {
                    queue.waiting.fetch_sub(1, Ordering::AcqRel);
                    if check.reply.is_closed() {
                        continue; // the request is gone
                    }
                    queue.checks.fetch_add(1, Ordering::Relaxed);
                    let user = users
                        .verify_in(&check.name, &check.password, &mut memory)
                        .cloned();
                    let _ = check.reply.send(user);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// The user `name` if `password` is theirs (checked against a decoy hash when the name
    /// is unknown, so both take the same time), or [`Busy`].
    pub async fn verify(&self, name: &str, password: &str) -> Result<Option<UserRecord>, Busy> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.queue.waiting.fetch_add(1, Ordering::AcqRel);
        let sent = self.send.try_send(Check {
            name: name.to_owned(),
            password: password.to_owned(),
            reply,
        });
        if sent.is_err() {
            self.queue.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Busy);
        }
        answer.await.map_err(|_| Busy)
    }

    /// Passwords checked so far (argon2 computations).
    pub fn checks(&self) -> u64 {
        self.queue.checks.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, password: &str, access: AccessLevel) -> UserRecord {
        UserRecord {
            name: name.into(),
            password_hash: hash_password(password).unwrap(),
            access,
            installations: vec!["gx1".into()],
        }
    }

    #[test]
    fn passwords_are_stored_hashed_and_verified() {
        let u = user("ann", "correct horse", AccessLevel::FullControl);
        assert!(u.password_hash.starts_with("$argon2id$"));
        assert!(!u.password_hash.contains("correct horse"));
        let users = Users::new(vec![u]).unwrap();
        assert!(users.verify("ann", "correct horse").is_some());
        assert!(users.verify("ann", "wrong").is_none());
        assert!(users.verify("bob", "correct horse").is_none());
    }

    #[test]
    fn bad_hashes_and_duplicates_are_refused() {
        let mut u = user("ann", "x", AccessLevel::MonitorOnly);
        u.password_hash = "plain".into();
        assert!(matches!(
            Users::new(vec![u]),
            Err(AuthError::BadHash { .. })
        ));
        let a = user("ann", "x", AccessLevel::MonitorOnly);
        assert_eq!(
            Users::new(vec![a.clone(), a]).unwrap_err(),
            AuthError::Duplicate("ann".into())
        );
    }

    #[test]
    fn sessions_keep_only_token_hashes_and_expire() {
        let u = user("ann", "x", AccessLevel::MonitorOnly);
        let sessions = Sessions::new(Duration::from_secs(60));
        let token = sessions.create(&u);
        assert_eq!(token.len(), 64);
        assert!(!sessions.stores_plain(&token));
        let s = sessions.lookup(&token).unwrap();
        assert_eq!(s.user, "ann");
        assert_eq!(s.access, AccessLevel::MonitorOnly);
        assert!(sessions.lookup(&"0".repeat(64)).is_none());
        assert!(sessions.lookup("short").is_none());
        sessions.remove(&token);
        assert!(sessions.lookup(&token).is_none());
        let expired = Sessions::new(Duration::ZERO);
        let t = expired.create(&u);
        assert!(expired.lookup(&t).is_none());
    }

    const HOME: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));
    const AWAY: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7)));

    #[test]
    fn repeated_failures_lock_a_user_name_for_a_while() {
        let t = LoginThrottle::default();
        for _ in 0..MAX_FAILED_LOGINS - 1 {
            drop(t.begin("ann", true, HOME).unwrap());
        }
        let last = t.begin("ann", true, HOME).unwrap();
        // The fifth attempt is under way: a sixth may not start, even from elsewhere.
        let wait = t.begin("ann", true, AWAY).unwrap_err();
        assert!(matches!(wait, Throttled::User(_)), "{wait:?}");
        drop(last);
        let wait = t.begin("ann", true, HOME).unwrap_err().wait();
        assert!(wait <= LOCKOUT && wait > LOCKOUT - Duration::from_secs(5));
        assert!(
            t.begin("bob", true, HOME).is_ok(),
            "other names are not affected"
        );
        t.lock().known.get_mut("ann").unwrap().last -= LOCKOUT;
        let one = t
            .begin("ann", true, HOME)
            .expect("one attempt after the lockout");
        assert!(t.begin("ann", true, HOME).is_err(), "only one at a time");
        one.succeeded();
        assert!(
            t.begin("ann", true, HOME).is_ok(),
            "a success clears the count"
        );
    }

    #[test]
    fn attempts_in_parallel_are_counted_before_they_are_checked() {
        let t = LoginThrottle::default();
        let started: Vec<_> = (0..40)
            .filter_map(|_| t.begin("ann", true, HOME).ok())
            .collect();
        assert_eq!(started.len(), MAX_FAILED_LOGINS as usize);
    }

    #[test]
    fn an_address_is_locked_whatever_names_it_tries() {
        let t = LoginThrottle::default();
        for i in 0..MAX_FAILED_LOGINS_PER_ADDRESS {
            drop(t.begin(&format!("guess{i}"), false, HOME).unwrap());
        }
        let e = t.begin("ann", true, HOME).unwrap_err();
        assert!(matches!(e, Throttled::Address(_)), "{e:?}");
        t.begin("ann", true, AWAY).unwrap().succeeded();
        // A success from the address does not unlock it.
        let v6 = |last: u16| Some(IpAddr::from([0x2001, 0xdb8, 1, 2, 0, 0, 0, last]));
        for i in 0..MAX_FAILED_LOGINS_PER_ADDRESS {
            drop(t.begin(&format!("v6-{i}"), false, v6(i as u16)).unwrap());
        }
        assert!(
            t.begin("x", false, v6(999)).is_err(),
            "an IPv6 /64 counts as one address"
        );
    }

    #[test]
    fn unknown_names_cannot_grow_the_table_without_end() {
        let t = LoginThrottle::default();
        for i in 0..MAX_TRACKED + 10 {
            let addr = Some(IpAddr::V4(std::net::Ipv4Addr::from(i as u32 + 1)));
            drop(t.begin(&format!("n{i}"), false, addr).unwrap());
        }
        let tallies = t.lock();
        assert!(tallies.unknown.len() <= MAX_TRACKED);
        assert!(tallies.addresses.len() <= MAX_TRACKED);
    }

    #[test]
    fn hashes_outside_the_cost_bounds_are_refused() {
        let h = hash_password("x").unwrap();
        assert!(check_hash(&h).is_ok());
        let text = h.replace("m=19456", &format!("m={}", ARGON2_MAX_MEMORY_KIB * 2));
        assert!(
            check_hash(&text).unwrap_err().contains("memory cost"),
            "{text}"
        );
        let text = h.replace("t=2", "t=99");
        assert!(check_hash(&text).unwrap_err().contains("time cost"));
        let text = h.replace("$argon2id$", "$argon2i$");
        assert!(check_hash(&text).unwrap_err().contains("argon2id"));
        assert!(check_hash("plain").is_err());
    }

    #[tokio::test]
    async fn a_fixed_pool_checks_passwords_and_counts_them() {
        let users = Arc::new(
            Users::new(vec![user("ann", "correct horse", AccessLevel::FullControl)]).unwrap(),
        );
        let pool = PasswordChecker::start(Arc::clone(&users), 2);
        let (a, b, c) = tokio::join!(
            pool.verify("ann", "correct horse"),
            pool.verify("ann", "wrong"),
            pool.verify("nobody", "correct horse"),
        );
        assert_eq!(a.unwrap().unwrap().name, "ann");
        assert!(b.unwrap().is_none());
        assert!(c.unwrap().is_none());
        assert_eq!(pool.checks(), 3);
    }

    #[test]
    fn installations_visible_to_a_user() {
        let mut u = user("ann", "x", AccessLevel::MonitorOnly);
        assert!(u.sees("gx1"));
        assert!(!u.sees("gx2"));
        u.installations = vec!["*".into()];
        assert!(u.sees("gx2"));
    }
}

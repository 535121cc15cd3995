//! The ordered queue of messages to VRM, kept on disk while the link is down.
//!
//! Every reply on `P/<portalId>/out` passes through here, in order. Status of an update
//! (state changes, progress, the end of stage 1, completion, failure) is
//! [`Durability::Durable`]: appended to `outbox.jsonl` and fsynced before it is sent, and
//! removed only once the broker acknowledged it, so status produced while the link is down
//! (or before a GX restart) is delivered when the link returns, in the order it was made.
//! Chunk acknowledgements are [`Durability::Volatile`]: meaningless after a reconnect (the GX
//! asks for the first missing chunk instead), they are dropped when the connection is lost.
//!
//! The file holds one line per durable message and one `{"ack": seq}` line per delivery, each
//! fsynced; it is emptied whenever nothing durable is pending and rewritten when delivered
//! lines dominate it. Each message gets a sequence number that only grows, across restarts
//! too; the link uses it as the reply's `msgnr`, so the portal drops a message delivered
//! twice (a power cut between the broker's acknowledgement and the ack line). Numbers are
//! leased in blocks recorded in `lease`, one fsync per block.

use crate::journal::durable::{ensure_dir, read_bounded, write_atomic};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const QUEUE_FILE: &str = "outbox.jsonl";
const LEASE_FILE: &str = "lease";
/// Sequence numbers leased per write of the lease file.
const LEASE_BLOCK: u64 = 1024;
/// Largest queue file read back.
const MAX_QUEUE_FILE: u64 = 64 * 1024 * 1024;

/// Whether a message survives a lost connection and a GX restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Kept on disk until delivered.
    Durable,
    /// Dropped when the connection is lost.
    Volatile,
}

/// Where a queued message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sending {
    Queued,
    InFlight,
}

/// One message waiting for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Its sequence number (the reply's `msgnr`).
    pub seq: u64,
    /// The MQTT topic.
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// Durable or volatile.
    pub durability: Durability,
    sending: Sending,
}

#[derive(Serialize, Deserialize)]
struct Line {
    seq: u64,
    topic: String,
    payload: String,
}

#[derive(Serialize, Deserialize)]
struct AckLine {
    ack: u64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum AnyLine {
    Message(Line),
    Ack(AckLine),
}

/// A failure of the outbox's files.
#[derive(Debug, thiserror::Error)]
#[error("VRM outbox: {op} {}: {source}", path.display())]
pub struct OutboxError {
    op: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> OutboxError + 'a {
    move |source| OutboxError {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The outbox in one directory.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    file: File,
    lines_on_disk: usize,
    queue: VecDeque<OutboxEntry>,
    next_seq: u64,
    lease: u64,
    max_entries: usize,
    dropped: u64,
}

fn read_number(path: &Path) -> Option<u64> {
    let bytes = read_bounded(path, 64).ok()?.ok()?;
    std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
}

impl Outbox {
    /// Default bound on queued messages: about forty updates' worth of status.
    pub const DEFAULT_MAX_ENTRIES: usize = 4096;

    /// Opens the outbox in `dir` (created when missing) and loads the durable messages not
    /// yet delivered. Unreadable lines (a write cut by a power loss) are skipped with a
    /// warning.
    pub fn open(dir: &Path, max_entries: usize) -> Result<Outbox, OutboxError> {
        ensure_dir(dir).map_err(io_err("create", dir))?;
        let path = dir.join(QUEUE_FILE);
        let leased = read_number(&dir.join(LEASE_FILE)).unwrap_or(1);
        let mut queue = VecDeque::new();
        let mut acked = std::collections::HashSet::new();
        let mut max_seq = 0;
        let mut lines_on_disk = 0;
        match read_bounded(&path, MAX_QUEUE_FILE) {
            Ok(Ok(bytes)) => {
                for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
                    if line.is_empty() {
                        continue;
                    }
                    lines_on_disk += 1;
                    match serde_json::from_slice::<AnyLine>(line) {
                        Ok(AnyLine::Message(l)) => {
                            max_seq = max_seq.max(l.seq);
                            queue.push_back(OutboxEntry {
                                seq: l.seq,
                                topic: l.topic,
                                payload: l.payload.into_bytes(),
                                durability: Durability::Durable,
                                sending: Sending::Queued,
                            });
                        }
                        Ok(AnyLine::Ack(a)) => {
                            acked.insert(a.ack);
                        }
                        Err(e) => tracing::warn!(
                            file = %path.display(),
                            line = n + 1,
                            error = %e,
                            "skipping unreadable outbox line"
                        ),
                    }
                }
            }
            Ok(Err(too_large)) => tracing::error!(
                file = %path.display(),
                limit = too_large.limit,
                "outbox file too large; its messages are dropped"
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("read", &path)(e)),
        }
        queue.retain(|e| !acked.contains(&e.seq));
        queue.make_contiguous().sort_by_key(|e| e.seq);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        let next_seq = leased.max(max_seq + 1);
        let mut outbox = Outbox {
            dir: dir.to_path_buf(),
            file,
            lines_on_disk,
            queue,
            next_seq,
            lease: next_seq,
            max_entries: max_entries.max(1),
            dropped: 0,
        };
        if !outbox.queue.is_empty() {
            tracing::info!(
                pending = outbox.queue.len(),
                "VRM outbox holds status from before; it is delivered when the link is up"
            );
        }
        // Start from a clean file when nothing is pending.
        if outbox.queue.is_empty() && outbox.lines_on_disk > 0 {
            outbox.truncate()?;
        }
        Ok(outbox)
    }

    fn allocate(&mut self) -> Result<u64, OutboxError> {
        if self.next_seq >= self.lease {
            let lease = self.next_seq + LEASE_BLOCK;
            write_atomic(&self.dir, LEASE_FILE, lease.to_string().as_bytes())
                .map_err(io_err("record lease in", &self.dir.join(LEASE_FILE)))?;
            self.lease = lease;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Queues a message to `topic` whose payload `build` makes from its sequence number. A
    /// durable message is on disk when this returns. When the queue is full, the oldest
    /// message is dropped with a warning.
    pub fn push(
        &mut self,
        topic: &str,
        durability: Durability,
        build: impl FnOnce(u64) -> Vec<u8>,
    ) -> Result<u64, OutboxError> {
        let seq = self.allocate()?;
        let payload = build(seq);
        if durability == Durability::Durable {
            let line = Line {
                seq,
                topic: topic.to_owned(),
                payload: String::from_utf8_lossy(&payload).into_owned(),
            };
            let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
            bytes.push(b'\n');
            let path = self.dir.join(QUEUE_FILE);
            crate::crash::point("outbox.append");
            self.file
                .write_all(&bytes)
                .and_then(|()| self.file.sync_data())
                .map_err(io_err("append to", &path))?;
            self.lines_on_disk += 1;
            crate::crash::point("outbox.appended");
        }
        if self.queue.len() >= self.max_entries
            && let Some(old) = self.queue.pop_front()
        {
            self.dropped += 1;
            tracing::warn!(
                seq = old.seq,
                topic = %old.topic,
                "VRM outbox full; oldest message dropped"
            );
            if old.durability == Durability::Durable {
                let mut bytes = serde_json::to_vec(&AckLine { ack: old.seq }).unwrap_or_default();
                bytes.push(b'\n');
                let path = self.dir.join(QUEUE_FILE);
                self.file
                    .write_all(&bytes)
                    .and_then(|()| self.file.sync_data())
                    .map_err(io_err("record dropped message in", &path))?;
                self.lines_on_disk += 1;
            }
        }
        self.queue.push_back(OutboxEntry {
            seq,
            topic: topic.to_owned(),
            payload,
            durability,
            sending: Sending::Queued,
        });
        Ok(seq)
    }

    /// The oldest message not yet sent, now marked in flight.
    pub fn next_to_send(&mut self) -> Option<OutboxEntry> {
        let entry = self
            .queue
            .iter_mut()
            .find(|e| e.sending == Sending::Queued)?;
        entry.sending = Sending::InFlight;
        Some(entry.clone())
    }

    /// Puts message `seq` back in the queue: it could not be handed to the connection.
    pub fn unsend(&mut self, seq: u64) {
        if let Some(e) = self.queue.iter_mut().find(|e| e.seq == seq) {
            e.sending = Sending::Queued;
        }
    }

    /// Messages sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.queue
            .iter()
            .filter(|e| e.sending == Sending::InFlight)
            .count()
    }

    /// Messages not yet delivered.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Durable messages not yet delivered.
    pub fn pending_durable(&self) -> usize {
        self.queue
            .iter()
            .filter(|e| e.durability == Durability::Durable)
            .count()
    }

    /// Messages dropped because the queue was full, since opening.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The broker acknowledged message `seq`: it leaves the queue, and a durable one is
    /// recorded as delivered on disk.
    pub fn delivered(&mut self, seq: u64) -> Result<(), OutboxError> {
        let Some(pos) = self.queue.iter().position(|e| e.seq == seq) else {
            return Ok(());
        };
        let entry = self.queue.remove(pos);
        if entry.is_none_or(|e| e.durability == Durability::Volatile) {
            return Ok(());
        }
        let pending = self.pending_durable();
        if pending == 0 {
            return self.truncate();
        }
        if self.lines_on_disk + 1 > 2 * pending + 256 {
            return self.compact();
        }
        let mut bytes = serde_json::to_vec(&AckLine { ack: seq }).unwrap_or_default();
        bytes.push(b'\n');
        let path = self.dir.join(QUEUE_FILE);
        self.file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data())
            .map_err(io_err("record delivery in", &path))?;
        self.lines_on_disk += 1;
        Ok(())
    }

    /// The connection was lost: messages in flight go back to the queue, volatile ones are
    /// dropped.
    pub fn connection_lost(&mut self) {
        self.queue.retain(|e| e.durability == Durability::Durable);
        for e in &mut self.queue {
            e.sending = Sending::Queued;
        }
    }

    /// Rewrites the file with the pending durable messages only.
    fn compact(&mut self) -> Result<(), OutboxError> {
        let mut bytes = Vec::new();
        for e in self
            .queue
            .iter()
            .filter(|e| e.durability == Durability::Durable)
        {
            let line = Line {
                seq: e.seq,
                topic: e.topic.clone(),
                payload: String::from_utf8_lossy(&e.payload).into_owned(),
            };
            bytes.extend(serde_json::to_vec(&line).unwrap_or_default());
            bytes.push(b'\n');
        }
        let path = self.dir.join(QUEUE_FILE);
        write_atomic(&self.dir, QUEUE_FILE, &bytes).map_err(io_err("compact", &path))?;
        self.file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err("reopen", &path))?;
        self.lines_on_disk = self.pending_durable();
        Ok(())
    }

    fn truncate(&mut self) -> Result<(), OutboxError> {
        let path = self.dir.join(QUEUE_FILE);
        self.file
            .set_len(0)
            .and_then(|()| self.file.sync_all())
            .map_err(io_err("empty", &path))?;
        self.lines_on_disk = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(o: &mut Outbox, d: Durability, text: &str) -> u64 {
        o.push("P/x/out", d, |seq| format!("{seq}:{text}").into_bytes())
            .unwrap()
    }

    fn drain(o: &mut Outbox) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(e) = o.next_to_send() {
            out.push(String::from_utf8(e.payload).unwrap());
        }
        out
    }

    #[test]
    fn undelivered_durable_messages_survive_a_restart_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path(), 100).unwrap();
        let a = push(&mut o, Durability::Durable, "a");
        push(&mut o, Durability::Volatile, "ack");
        let b = push(&mut o, Durability::Durable, "b");
        let c = push(&mut o, Durability::Durable, "c");
        assert!(a < b && b < c);
        assert_eq!(o.next_to_send().unwrap().seq, a);
        o.delivered(a).unwrap();
        drop(o);
        let mut o = Outbox::open(dir.path(), 100).unwrap();
        assert_eq!(drain(&mut o), [format!("{b}:b"), format!("{c}:c")]);
        // Numbers keep growing across the restart.
        assert!(push(&mut o, Durability::Volatile, "d") > c);
    }

    #[test]
    fn lost_connection_requeues_durable_and_drops_volatile() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path(), 100).unwrap();
        let a = push(&mut o, Durability::Durable, "a");
        push(&mut o, Durability::Volatile, "v");
        assert_eq!(drain(&mut o).len(), 2);
        assert_eq!(o.in_flight(), 2);
        o.connection_lost();
        assert_eq!(o.in_flight(), 0);
        assert_eq!(drain(&mut o), [format!("{a}:a")]);
    }

    #[test]
    fn file_is_emptied_when_everything_is_delivered_and_compacted_on_the_way() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path(), 10_000).unwrap();
        let first = push(&mut o, Durability::Durable, "keep");
        let _ = o.next_to_send();
        for i in 0..600 {
            let s = push(&mut o, Durability::Durable, &i.to_string());
            let _ = o.next_to_send();
            o.delivered(s).unwrap();
        }
        let size = std::fs::metadata(dir.path().join(QUEUE_FILE))
            .unwrap()
            .len();
        assert!(size < 40_000, "the file was compacted: {size} bytes");
        drop(o);
        let mut o = Outbox::open(dir.path(), 10_000).unwrap();
        assert_eq!(drain(&mut o), [format!("{first}:keep")]);
        o.delivered(first).unwrap();
        assert_eq!(
            std::fs::metadata(dir.path().join(QUEUE_FILE))
                .unwrap()
                .len(),
            0
        );
        drop(o);
        let mut o = Outbox::open(dir.path(), 10_000).unwrap();
        assert!(drain(&mut o).is_empty());
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path(), 100).unwrap();
        let a = push(&mut o, Durability::Durable, "a");
        drop(o);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(QUEUE_FILE))
            .unwrap();
        f.write_all(b"{\"seq\":99,\"topic\":\"P/x/o").unwrap();
        let mut o = Outbox::open(dir.path(), 100).unwrap();
        assert_eq!(drain(&mut o), [format!("{a}:a")]);
    }

    #[test]
    fn a_full_queue_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path(), 2).unwrap();
        push(&mut o, Durability::Durable, "a");
        let b = push(&mut o, Durability::Durable, "b");
        let c = push(&mut o, Durability::Durable, "c");
        assert_eq!(o.dropped(), 1);
        assert_eq!(drain(&mut o), [format!("{b}:b"), format!("{c}:c")]);
        drop(o);
        let mut o = Outbox::open(dir.path(), 2).unwrap();
        assert_eq!(drain(&mut o), [format!("{b}:b"), format!("{c}:c")]);
    }
}

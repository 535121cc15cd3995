//! Which `update` command each job answers to, kept on disk so the replies of a job still
//! carry its command id after a GX restart.

use crate::job::JobId;
use crate::journal::durable::{ensure_dir, read_bounded, write_atomic};
use crate::staging::Sha256Digest;
use bmsfw_vrm_wire::CommandId;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

const FILE: &str = "commands.json";
const MAX_FILE: u64 = 1024 * 1024;
/// Most commands remembered; the oldest is forgotten beyond (its job has long ended).
pub const MAX_COMMANDS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    job: JobId,
    commandid: CommandId,
    sha256: Sha256Digest,
}

/// The command ids of the jobs whose updates came through the link and have not ended.
#[derive(Debug)]
pub struct CommandRegistry {
    dir: PathBuf,
    entries: Vec<Entry>,
}

impl CommandRegistry {
    /// Loads the registry in `dir`; an unreadable file is reported and replaced by an empty
    /// registry (the jobs themselves are in the journal; only the reply ids are lost).
    pub fn open(dir: &Path) -> io::Result<CommandRegistry> {
        ensure_dir(dir)?;
        let path = dir.join(FILE);
        let entries = match read_bounded(&path, MAX_FILE) {
            Ok(Ok(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(file = %path.display(), error = %e, "unreadable command registry; starting empty");
                Vec::new()
            }),
            Ok(Err(_)) => {
                tracing::warn!(file = %path.display(), "command registry too large; starting empty");
                Vec::new()
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(CommandRegistry {
            dir: dir.to_path_buf(),
            entries,
        })
    }

    fn save(&self) -> io::Result<()> {
        let bytes = serde_json::to_vec(&self.entries).map_err(io::Error::other)?;
        write_atomic(&self.dir, FILE, &bytes)
    }

    /// Records that `job` answers to `commandid`.
    pub fn insert(
        &mut self,
        job: JobId,
        commandid: CommandId,
        sha256: Sha256Digest,
    ) -> io::Result<()> {
        self.entries
            .retain(|e| e.job != job && e.commandid != commandid);
        if self.entries.len() >= MAX_COMMANDS {
            self.entries.remove(0);
        }
        self.entries.push(Entry {
            job,
            commandid,
            sha256,
        });
        self.save()
    }

    /// Forgets `job` (its update ended and its last reply is queued).
    pub fn remove(&mut self, job: JobId) -> io::Result<()> {
        let before = self.entries.len();
        self.entries.retain(|e| e.job != job);
        if self.entries.len() == before {
            return Ok(());
        }
        self.save()
    }

    /// The command `job` answers to.
    pub fn command_for(&self, job: JobId) -> Option<&CommandId> {
        self.entries
            .iter()
            .find(|e| e.job == job)
            .map(|e| &e.commandid)
    }

    /// The job `commandid` created, with the digest of its package.
    pub fn job_for(&self, commandid: &CommandId) -> Option<(JobId, Sha256Digest)> {
        self.entries
            .iter()
            .find(|e| &e.commandid == commandid)
            .map(|e| (e.job, e.sha256))
    }

    /// Every job with a command.
    pub fn jobs(&self) -> Vec<JobId> {
        self.entries.iter().map(|e| e.job).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_restart_and_forgets_ended_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let id = CommandId::new("c-1").unwrap();
        let mut r = CommandRegistry::open(dir.path()).unwrap();
        r.insert(JobId(3), id.clone(), Sha256Digest([1; 32]))
            .unwrap();
        r.insert(
            JobId(4),
            CommandId::new("c-2").unwrap(),
            Sha256Digest([2; 32]),
        )
        .unwrap();
        drop(r);
        let mut r = CommandRegistry::open(dir.path()).unwrap();
        assert_eq!(r.command_for(JobId(3)), Some(&id));
        assert_eq!(r.job_for(&id), Some((JobId(3), Sha256Digest([1; 32]))));
        r.remove(JobId(3)).unwrap();
        drop(r);
        let r = CommandRegistry::open(dir.path()).unwrap();
        assert_eq!(r.command_for(JobId(3)), None);
        assert_eq!(r.jobs(), vec![JobId(4)]);
    }

    #[test]
    fn a_damaged_file_gives_an_empty_registry() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        let r = CommandRegistry::open(dir.path()).unwrap();
        assert!(r.jobs().is_empty());
    }

    #[test]
    fn bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = CommandRegistry::open(dir.path()).unwrap();
        for i in 0..(MAX_COMMANDS as u64 + 5) {
            let id = CommandId::new(&format!("c{i}")).unwrap();
            r.insert(JobId(i), id, Sha256Digest([0; 32])).unwrap();
        }
        assert_eq!(r.jobs().len(), MAX_COMMANDS);
        assert_eq!(r.command_for(JobId(0)), None);
    }
}

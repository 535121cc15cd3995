//! Remote commands on `P/<portalId>/in`: `{"opCommand": [name, {"commandid": .., ...}]}`.
//!
//! | name | what it asks | replies |
//! |---|---|---|
//! | `update` | update a battery with a package (all its nodes or modules, or the `targets` named): creates the job, opens the upload | starting, waitingforchunks, ..., finished or error |
//! | `uploadchunk` | stores chunk `index` of job `job`'s package | waitingforchunks (ack), filereceivedok |
//! | `uploadstatus` | where the upload of `job` stands (after a reconnect or a stall) | waitingforchunks with the first missing chunk |
//! | `geteventlog` | the battery's event log | finished with `events` |
//! | `getdiagnostics` | the diagnostics bundle of a job | finished with `diagnostics` |
//! | `preflight` | check a file for a battery before any update: upload it into staging (chunks with `job` 0) and let the battery's plugin inspect it | waitingforchunks, chunk acknowledgements, finished with `preflight` (see [`crate::preflight`]) |
//! | `cancel` | cancel update `job` while its file is uploading or before the transfer to the battery begins | the update's last reply: error (719, failed); refused (not finished) once the transfer to the battery has begun |
//!
//! Chunks, status queries and cancels carry the `commandid` of their `update`, so every
//! reply of one update arrives under one id.
//!
//! Every command refuses a field it does not know, naming it (`opCommand[1].<name>`), as
//! does the message itself (a key besides `opCommand`): a misspelt option is an error, never
//! silently ignored.

use crate::chunk::ChunkData;
use crate::envelope::kind_of;
use crate::error::{WireError, clip};
use crate::fields::{FileName, Serial, Sha256Hex};
use crate::limits::{
    DEFAULT_EVENTS, MAX_CHUNK_DATA, MAX_COMMAND_ID, MAX_COMMAND_MESSAGE, MAX_EVENTS,
    MAX_PACKAGE_SIZE,
};
use crate::preflight::PreflightCommand;
use crate::targets::TargetList;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::fmt;

/// The id a command's replies carry: 1 to 64 ASCII letters, digits, `_`, `-`, `.` or `:`.
/// A number in the message is taken as its decimal text.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CommandId(String);

impl CommandId {
    /// Checks `id`.
    pub fn new(id: &str) -> Result<CommandId, String> {
        if id.is_empty() || id.len() > MAX_COMMAND_ID {
            return Err(format!(
                "must be 1 to {MAX_COMMAND_ID} characters, is {}",
                id.len()
            ));
        }
        if let Some(c) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
        {
            return Err(format!("{:?} contains {c:?}", clip(id, 32)));
        }
        Ok(CommandId(id.to_owned()))
    }

    /// Reads an id from a JSON string or non-negative integer.
    pub fn from_json(v: &Value) -> Result<CommandId, String> {
        match v {
            Value::String(s) => CommandId::new(s),
            Value::Number(n) if n.is_u64() => CommandId::new(&n.to_string()),
            other => Err(format!(
                "must be a string or a non-negative integer, is {}",
                kind_of(other)
            )),
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CommandId {
    type Error = String;
    fn try_from(s: String) -> Result<CommandId, String> {
        CommandId::new(&s)
    }
}

impl From<CommandId> for String {
    fn from(id: CommandId) -> String {
        id.0
    }
}

impl fmt::Debug for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for CommandId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A warning of the manual the installer confirmed before pressing Update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Acknowledgement {
    /// The site is physically reachable in case on-site recovery is necessary.
    SiteReachable,
    /// The system has adequate backup capacity.
    BackupCapacity,
    /// A planned maintenance window, not a backup-power event.
    MaintenanceWindow,
}

impl Acknowledgement {
    /// Every acknowledgement an update needs.
    pub const ALL: [Acknowledgement; 3] = [
        Acknowledgement::SiteReachable,
        Acknowledgement::BackupCapacity,
        Acknowledgement::MaintenanceWindow,
    ];
}

/// Which target versions the installer accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionPolicy {
    /// Only a newer version (the default).
    #[default]
    NewerOnly,
    /// Also the same version again, or an older one.
    AllowReinstallOrDowngrade,
}

/// `update`: update battery `battery` with the announced package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateCommand {
    /// The battery's serial number.
    pub battery: Serial,
    /// The installer's file name.
    pub file_name: FileName,
    /// Exact package size in bytes (1 to 4 GiB).
    #[serde(deserialize_with = "de_size")]
    pub size: u64,
    /// Fixed chunk size of the upload (1 to [`MAX_CHUNK_DATA`]); only the last chunk is
    /// shorter.
    #[serde(deserialize_with = "de_chunk_size")]
    pub chunk_size: u32,
    /// SHA-256 of the whole package.
    pub sha256: Sha256Hex,
    /// The warnings the installer confirmed.
    #[serde(deserialize_with = "de_acks")]
    pub acknowledgements: BTreeSet<Acknowledgement>,
    /// Which target versions are accepted.
    #[serde(default)]
    pub version_policy: VersionPolicy,
    /// The nodes or modules to update, for a battery with several (a bank of BMS nodes, a
    /// pack of modules); left out (or `null`): every one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<TargetList>,
    /// The portal's signature over the fields above (see [`crate::signature`]); a GX
    /// refuses an update without a valid one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::signature::CommandSignature>,
}

pub(crate) fn de_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = u64::deserialize(d)?;
    if v == 0 || v > MAX_PACKAGE_SIZE {
        return Err(serde::de::Error::custom(format!(
            "must be 1 to {MAX_PACKAGE_SIZE} bytes, is {v}"
        )));
    }
    Ok(v)
}

pub(crate) fn de_chunk_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(d)?;
    if v == 0 || v as usize > MAX_CHUNK_DATA {
        return Err(serde::de::Error::custom(format!(
            "must be 1 to {MAX_CHUNK_DATA} bytes, is {v}"
        )));
    }
    Ok(v)
}

fn de_acks<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeSet<Acknowledgement>, D::Error> {
    // At most one of each: a longer list is hostile, not generous.
    let list = Vec::<Acknowledgement>::deserialize(d)?;
    if list.len() > Acknowledgement::ALL.len() {
        return Err(serde::de::Error::custom(format!(
            "{} entries, at most {}",
            list.len(),
            Acknowledgement::ALL.len()
        )));
    }
    Ok(list.into_iter().collect())
}

fn de_limit<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let v = u16::deserialize(d)?;
    if v == 0 || v > MAX_EVENTS {
        return Err(serde::de::Error::custom(format!(
            "must be 1 to {MAX_EVENTS}, is {v}"
        )));
    }
    Ok(v)
}

fn default_limit() -> u16 {
    DEFAULT_EVENTS
}

impl UpdateCommand {
    /// Number of chunks of the package.
    pub fn chunk_count(&self) -> u64 {
        self.size.div_ceil(u64::from(self.chunk_size))
    }

    /// The acknowledgements of [`Acknowledgement::ALL`] not given.
    pub fn missing_acknowledgements(&self) -> Vec<Acknowledgement> {
        Acknowledgement::ALL
            .into_iter()
            .filter(|a| !self.acknowledgements.contains(a))
            .collect()
    }
}

/// `uploadchunk`: chunk `index` of job `job`'s package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkCommand {
    /// The job the `update` created.
    pub job: u64,
    /// The chunk's index, from 0.
    pub index: u32,
    /// Its bytes.
    pub data: ChunkData,
}

/// `uploadstatus`: where the upload of `job` stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusQuery {
    /// The job.
    pub job: u64,
}

/// `geteventlog`: the last `limit` events of a battery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventLogQuery {
    /// The battery's serial number.
    pub battery: Serial,
    /// How many of the newest events (1 to [`MAX_EVENTS`], default [`DEFAULT_EVENTS`]).
    #[serde(default = "default_limit", deserialize_with = "de_limit")]
    pub limit: u16,
}

/// `getdiagnostics`: the diagnostics bundle of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiagnosticsQuery {
    /// The job.
    pub job: u64,
}

/// `cancel`: cancel update `job` (sent under the `commandid` of its `update`).
///
/// Honoured while the package is uploading to the GX or staged and not yet transferring to
/// the battery: the job fails with 719 and the bus is free. Refused once stage 2 (the
/// transfer to the battery) has begun: the update then runs to its end under its own safety
/// rules, so the battery never keeps a partial image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelCommand {
    /// The job.
    pub job: u64,
    /// The portal's signature (see [`crate::signature::sign_cancel`]); a GX refuses a
    /// cancel without a valid one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<crate::signature::CommandSignature>,
}

/// A command with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `update`.
    Update(UpdateCommand),
    /// `uploadchunk`.
    UploadChunk(ChunkCommand),
    /// `uploadstatus`.
    UploadStatus(StatusQuery),
    /// `geteventlog`.
    GetEventLog(EventLogQuery),
    /// `getdiagnostics`.
    GetDiagnostics(DiagnosticsQuery),
    /// `preflight`.
    Preflight(PreflightCommand),
    /// `cancel`.
    Cancel(CancelCommand),
}

impl Command {
    /// The command's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Update(_) => "update",
            Command::UploadChunk(_) => "uploadchunk",
            Command::UploadStatus(_) => "uploadstatus",
            Command::GetEventLog(_) => "geteventlog",
            Command::GetDiagnostics(_) => "getdiagnostics",
            Command::Preflight(_) => "preflight",
            Command::Cancel(_) => "cancel",
        }
    }

    /// Whether the command changes anything on the GX (refused outside full VRM access)
    /// or only reads.
    pub fn is_control(&self) -> bool {
        matches!(
            self,
            Command::Update(_)
                | Command::UploadChunk(_)
                | Command::UploadStatus(_)
                | Command::Preflight(_)
                | Command::Cancel(_)
        )
    }
}

/// One message on `P/<portalId>/in`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcCommand {
    /// The id every reply carries.
    pub id: CommandId,
    /// The command.
    pub command: Command,
}

/// A command that could not be read, with its id when that much was readable (the GX
/// replies under it; otherwise under a null id).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct CommandParseError {
    /// The command's id, when readable.
    pub commandid: Option<CommandId>,
    /// What was wrong.
    pub error: WireError,
}

fn args_of<T: DeserializeOwned>(args: Map<String, Value>) -> Result<T, WireError> {
    serde_path_to_error::deserialize::<_, T>(Value::Object(args)).map_err(|e| {
        let path = e.path().to_string();
        // An unknown field's path ends with its name.
        let field = if path == "." || path.is_empty() {
            "opCommand[1]".to_owned()
        } else {
            format!("opCommand[1].{}", clip(&path, 96))
        };
        WireError::field(field, e.into_inner().to_string())
    })
}

impl RpcCommand {
    /// Parses a message of at most [`MAX_COMMAND_MESSAGE`] bytes.
    pub fn parse(bytes: &[u8]) -> Result<RpcCommand, CommandParseError> {
        let fail =
            |commandid: Option<CommandId>, error: WireError| CommandParseError { commandid, error };
        WireError::check_size("command message", bytes.len(), MAX_COMMAND_MESSAGE)
            .map_err(|e| fail(None, e))?;
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            fail(
                None,
                WireError::NotJson {
                    what: "command message",
                    reason: e.to_string(),
                },
            )
        })?;
        let Value::Object(mut message) = value else {
            return Err(fail(
                None,
                WireError::field(
                    "(message)",
                    format!("must be an object, is {}", kind_of(&value)),
                ),
            ));
        };
        let op = message
            .remove("opCommand")
            .ok_or_else(|| fail(None, WireError::field("opCommand", "missing")))?;
        if let Some(key) = message.keys().next() {
            return Err(fail(
                None,
                WireError::field(clip(key, 64), "unknown field, expected only `opCommand`"),
            ));
        }
        let Value::Array(op) = op else {
            return Err(fail(
                None,
                WireError::field(
                    "opCommand",
                    format!("must be [name, arguments], is {}", kind_of(&op)),
                ),
            ));
        };
        let [name, args]: [Value; 2] = op.try_into().map_err(|op: Vec<Value>| {
            fail(
                None,
                WireError::field(
                    "opCommand",
                    format!("must be [name, arguments], has {} elements", op.len()),
                ),
            )
        })?;
        let Value::Object(mut args) = args else {
            return Err(fail(
                None,
                WireError::field(
                    "opCommand[1]",
                    format!("arguments must be an object, are {}", kind_of(&args)),
                ),
            ));
        };
        let id = match args.remove("commandid") {
            None => {
                return Err(fail(
                    None,
                    WireError::field("opCommand[1].commandid", "missing"),
                ));
            }
            Some(v) => CommandId::from_json(&v)
                .map_err(|r| fail(None, WireError::field("opCommand[1].commandid", r)))?,
        };
        let name = match name {
            Value::String(s) => s,
            other => {
                return Err(fail(
                    Some(id),
                    WireError::field(
                        "opCommand[0]",
                        format!("the command name must be a string, is {}", kind_of(&other)),
                    ),
                ));
            }
        };
        let command = match name.as_str() {
            "update" => args_of(args).map(Command::Update),
            "uploadchunk" => args_of(args).map(Command::UploadChunk),
            "uploadstatus" => args_of(args).map(Command::UploadStatus),
            "geteventlog" => args_of(args).map(Command::GetEventLog),
            "getdiagnostics" => args_of(args).map(Command::GetDiagnostics),
            "preflight" => args_of(args).map(Command::Preflight),
            "cancel" => args_of(args).map(Command::Cancel),
            _ => Err(WireError::UnknownCommand {
                name: clip(&name, 64),
            }),
        };
        match command {
            Ok(command) => Ok(RpcCommand { id, command }),
            Err(error) => Err(fail(Some(id), error)),
        }
    }

    /// The message bytes.
    pub fn encode(&self) -> Vec<u8> {
        let args = match &self.command {
            Command::Update(c) => serde_json::to_value(c),
            Command::UploadChunk(c) => serde_json::to_value(c),
            Command::UploadStatus(c) => serde_json::to_value(c),
            Command::GetEventLog(c) => serde_json::to_value(c),
            Command::GetDiagnostics(c) => serde_json::to_value(c),
            Command::Preflight(c) => serde_json::to_value(c),
            Command::Cancel(c) => serde_json::to_value(c),
        };
        // Plain structs of strings and numbers always serialize to an object.
        let mut args = match args {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        args.insert("commandid".into(), Value::String(self.id.0.clone()));
        let message = serde_json::json!({
            "opCommand": [self.command.name(), Value::Object(args)],
        });
        serde_json::to_vec(&message).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const SHA: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn update() -> RpcCommand {
        RpcCommand {
            id: CommandId::new("c-1").unwrap(),
            command: Command::Update(UpdateCommand {
                battery: Serial::new("SN-0042").unwrap(),
                file_name: FileName::new("ax5-2.1.bin").unwrap(),
                size: 40_000,
                chunk_size: 16_384,
                sha256: Sha256Hex::parse(SHA).unwrap(),
                acknowledgements: Acknowledgement::ALL.into_iter().collect(),
                version_policy: VersionPolicy::AllowReinstallOrDowngrade,
                targets: None,
                signature: None,
            }),
        }
    }

    fn error_of(message: Value) -> CommandParseError {
        RpcCommand::parse(&serde_json::to_vec(&message).unwrap()).unwrap_err()
    }

    fn field_of(message: Value) -> String {
        match error_of(message).error {
            WireError::Field { field, .. } => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn every_command_round_trips() {
        let id = CommandId::new("c-1").unwrap();
        let commands = [
            update().command,
            Command::UploadChunk(ChunkCommand {
                job: 7,
                index: 2,
                data: ChunkData::new(vec![1, 2, 3]).unwrap(),
            }),
            Command::UploadStatus(StatusQuery { job: 7 }),
            Command::GetEventLog(EventLogQuery {
                battery: Serial::new("SN-0042").unwrap(),
                limit: 20,
            }),
            Command::GetDiagnostics(DiagnosticsQuery { job: 7 }),
            Command::Cancel(CancelCommand {
                job: 7,
                signature: None,
            }),
            Command::Preflight(PreflightCommand {
                battery: Serial::new("SN-0042").unwrap(),
                file_name: FileName::new("ax5-2.1.bin").unwrap(),
                size: 40_000,
                chunk_size: 16_384,
                sha256: Sha256Hex::parse(SHA).unwrap(),
            }),
        ];
        for command in commands {
            let rpc = RpcCommand {
                id: id.clone(),
                command,
            };
            assert_eq!(RpcCommand::parse(&rpc.encode()).unwrap(), rpc);
        }
    }

    #[test]
    fn the_wire_shape_is_the_gx_convention() {
        let v: Value = serde_json::from_slice(&update().encode()).unwrap();
        assert_eq!(v["opCommand"][0], "update");
        assert_eq!(v["opCommand"][1]["commandid"], "c-1");
        assert_eq!(v["opCommand"][1]["sha256"], SHA);
        assert_eq!(
            v["opCommand"][1]["version_policy"],
            "allow_reinstall_or_downgrade"
        );
        let numeric = json!({"opCommand": ["getdiagnostics", {"commandid": 17, "job": 3}]});
        let parsed = RpcCommand::parse(&serde_json::to_vec(&numeric).unwrap()).unwrap();
        assert_eq!(parsed.id.as_str(), "17");
    }

    #[test]
    fn defaults_apply() {
        let m = json!({"opCommand": ["geteventlog", {"commandid": "e", "battery": "SN"}]});
        match RpcCommand::parse(&serde_json::to_vec(&m).unwrap())
            .unwrap()
            .command
        {
            Command::GetEventLog(q) => assert_eq!(q.limit, DEFAULT_EVENTS),
            other => panic!("{other:?}"),
        }
        let mut v: Value = serde_json::from_slice(&update().encode()).unwrap();
        v["opCommand"][1]
            .as_object_mut()
            .unwrap()
            .remove("version_policy");
        match RpcCommand::parse(&serde_json::to_vec(&v).unwrap())
            .unwrap()
            .command
        {
            Command::Update(u) => assert_eq!(u.version_policy, VersionPolicy::NewerOnly),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field_and_keep_the_command_id() {
        let base: Value = serde_json::from_slice(&update().encode()).unwrap();
        let with = |key: &str, value: Value| {
            let mut v = base.clone();
            v["opCommand"][1][key] = value;
            v
        };
        assert_eq!(
            field_of(with("chunk_size", json!(0))),
            "opCommand[1].chunk_size"
        );
        assert_eq!(
            field_of(with("chunk_size", json!(MAX_CHUNK_DATA + 1))),
            "opCommand[1].chunk_size"
        );
        assert_eq!(field_of(with("size", json!(-1))), "opCommand[1].size");
        assert_eq!(
            field_of(with("sha256", json!("abc"))),
            "opCommand[1].sha256"
        );
        assert_eq!(
            field_of(with("file_name", json!("../x"))),
            "opCommand[1].file_name"
        );
        assert_eq!(field_of(with("battery", json!(""))), "opCommand[1].battery");
        assert_eq!(
            field_of(with("acknowledgements", json!(["site_reachable", "nope"]))),
            "opCommand[1].acknowledgements[1]"
        );
        assert_eq!(
            field_of(with("acknowledgements", json!(vec!["site_reachable"; 4]))),
            "opCommand[1].acknowledgements"
        );
        let mut no_sha = base.clone();
        no_sha["opCommand"][1]
            .as_object_mut()
            .unwrap()
            .remove("sha256");
        let e = error_of(no_sha);
        assert_eq!(e.commandid.as_ref().map(CommandId::as_str), Some("c-1"));
        assert!(e.to_string().contains("sha256"), "{e}");

        let chunk = |data: Value| json!({"opCommand": ["uploadchunk", {"commandid": "c", "job": 1, "index": 0, "data": data}]});
        assert_eq!(field_of(chunk(json!("@@@@"))), "opCommand[1].data");
        assert_eq!(field_of(chunk(json!(5))), "opCommand[1].data");
        let index = json!({"opCommand": ["uploadchunk", {"commandid": "c", "job": 1, "index": 4294967296u64, "data": "AA=="}]});
        assert_eq!(field_of(index), "opCommand[1].index");
        let limit =
            json!({"opCommand": ["geteventlog", {"commandid": "c", "battery": "S", "limit": 501}]});
        assert_eq!(field_of(limit), "opCommand[1].limit");
    }

    #[test]
    fn malformed_envelopes() {
        assert_eq!(field_of(json!({})), "opCommand");
        assert_eq!(field_of(json!({"opCommand": "update"})), "opCommand");
        assert_eq!(field_of(json!({"opCommand": ["update"]})), "opCommand");
        assert_eq!(
            field_of(json!({"opCommand": ["update", []]})),
            "opCommand[1]"
        );
        assert_eq!(
            field_of(json!({"opCommand": ["update", {}]})),
            "opCommand[1].commandid"
        );
        assert_eq!(
            field_of(json!({"opCommand": ["update", {"commandid": "a b"}]})),
            "opCommand[1].commandid"
        );
        assert_eq!(
            field_of(json!({"opCommand": [1, {"commandid": "a"}]})),
            "opCommand[0]"
        );
        let unknown = error_of(json!({"opCommand": ["reboot", {"commandid": "r"}]}));
        assert_eq!(unknown.commandid.as_ref().map(CommandId::as_str), Some("r"));
        assert_eq!(
            unknown.error,
            WireError::UnknownCommand {
                name: "reboot".into()
            }
        );
        assert!(matches!(
            RpcCommand::parse(b"{\"opCommand\":").unwrap_err().error,
            WireError::NotJson { .. }
        ));
        let huge = vec![b' '; MAX_COMMAND_MESSAGE + 1];
        assert!(matches!(
            RpcCommand::parse(&huge).unwrap_err().error,
            WireError::TooLarge { .. }
        ));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(RpcCommand::parse(deep.as_bytes()).is_err());
    }

    #[test]
    fn the_targets_round_trip_and_hostile_ones_are_refused_by_field() {
        let mut rpc = update();
        if let Command::Update(u) = &mut rpc.command {
            u.targets = Some(TargetList::new(vec![2]).unwrap());
        }
        let bytes = rpc.encode();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["opCommand"][1]["targets"], json!([2]));
        assert_eq!(RpcCommand::parse(&bytes).unwrap(), rpc);
        // Left out, or null: every node or module.
        let base: Value = serde_json::from_slice(&update().encode()).unwrap();
        assert!(base["opCommand"][1].get("targets").is_none());
        let mut null = base.clone();
        null["opCommand"][1]["targets"] = Value::Null;
        match RpcCommand::parse(&serde_json::to_vec(&null).unwrap())
            .unwrap()
            .command
        {
            Command::Update(u) => assert_eq!(u.targets, None),
            other => panic!("{other:?}"),
        }
        let with = |targets: Value| {
            let mut v = base.clone();
            v["opCommand"][1]["targets"] = targets;
            error_of(v)
        };
        let too_many: Vec<u16> = (1..=40).collect();
        for (targets, reason) in [
            (json!(too_many), "at most 32"),
            (json!([2, 2]), "names 2 twice"),
            (json!([0]), "names 0"),
            (json!([300]), "names 300"),
            (json!([70000]), "70000"),
            (json!([]), "names no node or module"),
            (json!("2"), "sequence"),
            (json!([1.5]), "1.5"),
        ] {
            let e = with(targets.clone());
            assert_eq!(e.commandid.as_ref().map(CommandId::as_str), Some("c-1"));
            match &e.error {
                WireError::Field { field, .. } => {
                    assert!(
                        field.starts_with("opCommand[1].targets"),
                        "{targets}: {field}"
                    )
                }
                other => panic!("{targets}: {other:?}"),
            }
            assert!(e.to_string().contains(reason), "{targets}: {e}");
        }
    }

    #[test]
    fn every_command_refuses_an_unknown_field_by_name() {
        let sample = [
            update().encode(),
            RpcCommand {
                id: CommandId::new("c-1").unwrap(),
                command: Command::UploadChunk(ChunkCommand {
                    job: 7,
                    index: 2,
                    data: ChunkData::new(vec![1, 2, 3]).unwrap(),
                }),
            }
            .encode(),
            serde_json::to_vec(
                &json!({"opCommand": ["uploadstatus", {"commandid": "c-1", "job": 7}]}),
            )
            .unwrap(),
            serde_json::to_vec(
                &json!({"opCommand": ["geteventlog", {"commandid": "c-1", "battery": "SN"}]}),
            )
            .unwrap(),
            serde_json::to_vec(
                &json!({"opCommand": ["getdiagnostics", {"commandid": "c-1", "job": 7}]}),
            )
            .unwrap(),
            serde_json::to_vec(&json!({"opCommand": ["cancel", {"commandid": "c-1", "job": 7}]}))
                .unwrap(),
            serde_json::to_vec(
                &json!({"opCommand": ["preflight", {"commandid": "c-1", "battery": "SN",
                "file_name": "a.bin", "size": 10, "chunk_size": 4, "sha256": SHA}]}),
            )
            .unwrap(),
        ];
        for bytes in sample {
            let good: Value = serde_json::from_slice(&bytes).unwrap();
            let name = good["opCommand"][0].as_str().unwrap().to_owned();
            assert!(RpcCommand::parse(&bytes).is_ok(), "{name}");
            let mut bad = good.clone();
            bad["opCommand"][1]["auto_restart"] = json!(true);
            let e = error_of(bad);
            assert_eq!(
                e.commandid.as_ref().map(CommandId::as_str),
                Some("c-1"),
                "{name}"
            );
            match &e.error {
                WireError::Field { field, reason } => {
                    assert_eq!(field, "opCommand[1].auto_restart", "{name}");
                    assert!(
                        reason.contains("unknown field `auto_restart`"),
                        "{name}: {reason}"
                    );
                }
                other => panic!("{name}: {other:?}"),
            }
            let mut outer = good.clone();
            outer["priority"] = json!(1);
            assert_eq!(field_of(outer), "priority", "{name}");
        }
    }

    #[test]
    fn read_commands_are_not_control() {
        assert!(update().command.is_control());
        assert!(!Command::GetDiagnostics(DiagnosticsQuery { job: 1 }).is_control());
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = RpcCommand::parse(&bytes);
        }

        #[test]
        fn parsing_mutated_commands_never_panics_nor_misreads(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6)
        ) {
            let good = update().encode();
            let mut bytes = good.clone();
            for (i, b) in &flips {
                let i = i.index(bytes.len());
                bytes[i] = *b;
            }
            if let Ok(parsed) = RpcCommand::parse(&bytes) {
                // Whatever parses re-encodes to something that parses to the same command.
                prop_assert_eq!(RpcCommand::parse(&parsed.encode()).unwrap(), parsed);
            }
        }

        #[test]
        fn commands_with_arbitrary_ids_and_sizes(id in "[A-Za-z0-9_.:-]{1,64}", size in 1u64..(1u64 << 32), chunk in 1u32..=(MAX_CHUNK_DATA as u32)) {
            let mut rpc = update();
            rpc.id = CommandId::new(&id).unwrap();
            if let Command::Update(u) = &mut rpc.command {
                u.size = size;
                u.chunk_size = chunk;
            }
            prop_assert_eq!(RpcCommand::parse(&rpc.encode()).unwrap(), rpc);
        }
    }
}

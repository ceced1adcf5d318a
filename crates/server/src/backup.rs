//! Online backup of a running server into a new directory, and the offline restore of
//! such a backup into a new data directory after checking every byte of it (ADR 009).
//!
//! A backup is laid out as a data directory (`log/segments/`, `keys/`, `token-secret`,
//! `demo-clock`, `calendar/`) plus `manifest.json`, written last: a directory without a manifest is an
//! unfinished backup and restore refuses it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anju_app::Application;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest's file name in a backup directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The manifest format this build writes and reads.
pub const MANIFEST_FORMAT: &str = "anju-backup-1";

/// What a backup holds; `manifest.json` in the backup directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    /// The log in the backup holds its first `position` events: API positions 1 to
    /// `position` (`ReadAll` counts from 1).
    pub position: u64,
    /// When the backup started, UTC, RFC 3339.
    pub started_at: String,
    /// How long it took, in milliseconds.
    pub elapsed_ms: u64,
    /// The node id of the server that took it.
    pub node_id: String,
    /// The anju-server version that took it.
    pub anju_version: String,
    /// Key store records copied.
    pub key_records: u32,
    /// Every file of the backup but the manifest, in the order written.
    pub files: Vec<ManifestFile>,
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Relative to the backup directory, `/`-separated; the same path in a data directory.
    pub path: String,
    pub bytes: u64,
    /// SHA-256 of the contents, lowercase hex.
    pub sha256: String,
}

impl Manifest {
    /// The total size of the files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// Why a backup was not taken.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The target is not usable; nothing was written.
    #[error("{0}")]
    Target(String),
    /// Copying failed; what was written is removed again.
    #[error("the backup failed: {0}")]
    Failed(String),
}

/// Why a restore was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The target data directory is not usable; nothing was written.
    #[error("{0}")]
    Target(String),
    /// The backup is incomplete, damaged or altered; nothing was written.
    #[error("the backup in {dir} cannot be restored: {reason}")]
    Backup { dir: PathBuf, reason: String },
    /// Writing the data directory failed; what was written is removed again.
    #[error("restoring failed: {0}")]
    Failed(String),
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    pub manifest: Manifest,
    pub elapsed: Duration,
}

/// Checks that `dir` can take a backup or a restore: absolute, and either missing (with
/// an existing parent) or an empty directory. `what` names it in the message.
pub fn check_new_directory(dir: &Path, what: &str) -> Result<(), String> {
    if !dir.is_absolute() {
        return Err(format!(
            "{what} must be an absolute path, not {}",
            dir.display()
        ));
    }
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(format!(
                    "{what} {} is not empty: give a new or empty directory",
                    dir.display()
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match dir.parent() {
            Some(parent) if parent.is_dir() => Ok(()),
            _ => Err(format!(
                "{what} {}: its parent directory does not exist",
                dir.display()
            )),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(format!(
            "{what} {} is a file, not a directory",
            dir.display()
        )),
        Err(e) => Err(format!("{what} {}: {e}", dir.display())),
    }
}

/// Removes what a failed backup or restore wrote: the directory itself if it made it,
/// else everything in it.
fn remove_written(dir: &Path, created: bool) {
    if created {
        let _ = std::fs::remove_dir_all(dir);
    } else if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}

/// Takes an online backup of the running `application` into `to` (see the module
/// comment). `token_secret` is the token secret file to copy when it lives in the data
/// directory.
pub async fn take_backup(
    application: &Application,
    token_secret: Option<&Path>,
    node_id: &str,
    to: &Path,
) -> Result<Manifest, BackupError> {
    check_new_directory(to, "directory").map_err(BackupError::Target)?;
    let started = Instant::now();
    let started_at = SystemTime::now();
    let created = !to.exists();
    if created {
        std::fs::create_dir(to)
            .map_err(|e| BackupError::Target(format!("to_dir {}: {e}", to.display())))?;
    }
    let result = async {
        let copied = application
            .backup(to)
            .await
            .map_err(|e| BackupError::Failed(e.to_string()))?;
        let mut paths = copied.files;
        if let Some(secret) = token_secret {
            let name = anju_auth::SECRET_FILE_NAME;
            std::fs::copy(secret, to.join(name))
                .map_err(|e| BackupError::Failed(format!("copying {}: {e}", secret.display())))?;
            paths.push(name.to_string());
        }
        let dir = to.to_path_buf();
        let files = tokio::task::spawn_blocking(move || hash_and_sync(&dir, &paths))
            .await
            .map_err(|e| BackupError::Failed(format!("hashing panicked: {e}")))?
            .map_err(BackupError::Failed)?;
        let manifest = Manifest {
            format: MANIFEST_FORMAT.to_string(),
            position: copied.position,
            started_at: rfc3339(started_at),
            elapsed_ms: started.elapsed().as_millis() as u64,
            node_id: node_id.to_string(),
            anju_version: env!("CARGO_PKG_VERSION").to_string(),
            key_records: copied.key_records,
            files,
        };
        write_manifest(to, &manifest).map_err(BackupError::Failed)?;
        Ok(manifest)
    }
    .await;
    if result.is_err() {
        remove_written(to, created);
    }
    result
}

/// Each file's size and SHA-256, after syncing it, and the directories synced.
fn hash_and_sync(dir: &Path, paths: &[String]) -> Result<Vec<ManifestFile>, String> {
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let full = dir.join(path);
        let file = File::open(&full).map_err(|e| format!("{}: {e}", full.display()))?;
        file.sync_all()
            .map_err(|e| format!("syncing {}: {e}", full.display()))?;
        let (bytes, sha256) = hash(file).map_err(|e| format!("{}: {e}", full.display()))?;
        files.push(ManifestFile {
            path: path.clone(),
            bytes,
            sha256,
        });
    }
    for sub in ["log/segments", "log", "keys", "calendar", ""] {
        let _ = File::open(dir.join(sub)).and_then(|d| d.sync_all());
    }
    Ok(files)
}

fn hash(mut reader: impl Read) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hex(&hasher.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the manifest under a temporary name, syncs it, renames it into place and syncs
/// the directory: a backup has a manifest only once everything in it is on disk.
fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), String> {
    let text = serde_json::to_vec_pretty(manifest).map_err(|e| e.to_string())?;
    let tmp = dir.join(format!("{MANIFEST_FILE}.tmp"));
    let path = dir.join(MANIFEST_FILE);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    file.write_all(&text)
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// `time` as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let date = anju_domain::CivilDate::from_day_number(secs.div_euclid(86_400));
    let of_day = secs.rem_euclid(86_400);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        date.year,
        date.month,
        date.day,
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// `anju-server backup --to DIR`: asks the server running with `config` (on this host,
/// at its gRPC address, or loopback when it listens on every address) to back up into
/// `to`, with a five-minute admin token made from its token secret, as
/// `anju token issue` does. `to` is made absolute against the current directory.
pub async fn backup_via_rpc(
    config: &crate::Config,
    to: &Path,
) -> Result<anju_proto::v1::BackupResponse, String> {
    let to = if to.is_absolute() {
        to.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("the current directory: {e}"))?
            .join(to)
    };
    let secret_path = config
        .secret_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join(anju_auth::SECRET_FILE_NAME));
    let secret = anju_auth::read_secret_file(&secret_path)
        .map_err(|e| format!("reading the token secret {}: {e}", secret_path.display()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| format!("reading the clock: {e}"))?
        .as_secs();
    let claims = anju_auth::Claims {
        sub: "anju-server backup".into(),
        role: anju_auth::Role::Admin,
        sites: vec![anju_auth::ALL_SITES.into()],
        categories: Vec::new(),
        exp: now + 300,
        iat: now,
    };
    let token = anju_auth::issue(&secret, &claims);
    let mut addr = config.grpc_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connecting to anju-server at {addr} (is it running?): {e}"))?;
    let mut client = anju_proto::v1::admin_service_client::AdminServiceClient::new(channel);
    let mut request = tonic::Request::new(anju_proto::v1::BackupRequest {
        to_dir: to.display().to_string(),
    });
    let bearer = format!("Bearer {token}")
        .parse()
        .map_err(|e| format!("the token is not a header value: {e}"))?;
    request.metadata_mut().insert("authorization", bearer);
    client
        .backup(request)
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
}

/// Reads and checks the manifest of the backup in `from`.
pub fn read_manifest(from: &Path) -> Result<Manifest, RestoreError> {
    let bad = |reason: String| RestoreError::Backup {
        dir: from.to_path_buf(),
        reason,
    };
    let path = from.join(MANIFEST_FILE);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(bad(format!(
                "it has no {MANIFEST_FILE}: it is not a backup, or one that did not finish"
            )))
        }
        Err(e) => return Err(bad(format!("reading {}: {e}", path.display()))),
    };
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| bad(format!("{} is not a backup manifest: {e}", path.display())))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(bad(format!(
            "its manifest has format {:?}; this anju-server reads {MANIFEST_FORMAT:?}",
            manifest.format
        )));
    }
    for file in &manifest.files {
        let relative = Path::new(&file.path);
        if file.path.is_empty()
            || !relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(bad(format!(
                "its manifest names the file {:?}, which is not a plain relative path",
                file.path
            )));
        }
    }
    Ok(manifest)
}

/// Checks every file of the backup in `from` against its manifest (size and SHA-256) and
/// the log in it as `anju log verify` does (no damage, no unfinished write, exactly
/// `position` events), without writing anything. Returns the manifest.
pub fn verify_backup(from: &Path) -> Result<Manifest, RestoreError> {
    let manifest = read_manifest(from)?;
    let bad = |reason: String| RestoreError::Backup {
        dir: from.to_path_buf(),
        reason,
    };
    for file in &manifest.files {
        let path = from.join(&file.path);
        let opened = File::open(&path).map_err(|e| bad(format!("{}: {e}", file.path)))?;
        let (bytes, sha256) = hash(opened).map_err(|e| bad(format!("{}: {e}", file.path)))?;
        if bytes != file.bytes || sha256 != file.sha256 {
            return Err(bad(format!(
                "{} does not match the manifest: {bytes} bytes with sha256 {sha256}, the \
                 manifest says {} bytes with sha256 {}",
                file.path, file.bytes, file.sha256
            )));
        }
    }
    let report = anju_eventlog::verify_directory(&from.join("log"))
        .map_err(|e| bad(format!("verifying its log: {e}")))?;
    if !report.is_ok() {
        return Err(bad(format!(
            "its log has {} problem(s): {}",
            report.problems_found,
            report.problems.join("; ")
        )));
    }
    if let Some(torn) = report.torn_tail {
        return Err(bad(format!("its log ends in an unfinished write: {torn}")));
    }
    if report.events != manifest.position {
        return Err(bad(format!(
            "its log holds {} events where the manifest says {}",
            report.events, manifest.position
        )));
    }
    Ok(manifest)
}

/// Restores the backup in `from` into the new data directory `data_dir`: checks the
/// target is new or empty and the whole backup (see [`verify_backup`]) before writing
/// anything, then copies each file, checking its hash again as it is copied, and syncs
/// everything. A server started on `data_dir` answers as the backed-up one did at the
/// backup's position, once it has rebuilt its read models from the log.
pub fn restore(from: &Path, data_dir: &Path) -> Result<RestoreReport, RestoreError> {
    let started = Instant::now();
    let data_dir = if data_dir.is_absolute() {
        data_dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| RestoreError::Target(format!("the current directory: {e}")))?
            .join(data_dir)
    };
    check_new_directory(&data_dir, "--data-dir").map_err(RestoreError::Target)?;
    let manifest = verify_backup(from)?;
    let created = !data_dir.exists();
    if created {
        std::fs::create_dir(&data_dir)
            .map_err(|e| RestoreError::Target(format!("--data-dir {}: {e}", data_dir.display())))?;
    }
    let copied = copy_checked(from, &data_dir, &manifest);
    if let Err(e) = copied {
        remove_written(&data_dir, created);
        return Err(e);
    }
    Ok(RestoreReport {
        manifest,
        elapsed: started.elapsed(),
    })
}

fn copy_checked(from: &Path, to: &Path, manifest: &Manifest) -> Result<(), RestoreError> {
    let failed =
        |what: &Path, e: std::io::Error| RestoreError::Failed(format!("{}: {e}", what.display()));
    let mut dirs = vec![to.to_path_buf()];
    for file in &manifest.files {
        let source = from.join(&file.path);
        let target = to.join(&file.path);
        if let Some(parent) = target.parent() {
            if !parent.exists() {
                std::fs::create_dir_all(parent).map_err(|e| failed(parent, e))?;
                dirs.push(parent.to_path_buf());
            }
        }
        let mut reader = File::open(&source).map_err(|e| failed(&source, e))?;
        let mut writer = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| failed(&target, e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut buf).map_err(|e| failed(&source, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            writer
                .write_all(&buf[..n])
                .map_err(|e| failed(&target, e))?;
        }
        writer.sync_all().map_err(|e| failed(&target, e))?;
        if hex(&hasher.finalize()) != file.sha256 {
            return Err(RestoreError::Backup {
                dir: from.to_path_buf(),
                reason: format!("{} changed while it was being restored", file.path),
            });
        }
    }
    // Deepest first, so each directory's entry is synced after what it holds.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for dir in dirs {
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| failed(&dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc_seconds() {
        let time = UNIX_EPOCH + Duration::from_secs(1_796_461_261);
        assert_eq!(rfc3339(time), "2026-12-05T09:01:01Z");
    }

    #[test]
    fn a_new_directory_must_be_absolute_and_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_new_directory(Path::new("relative/dir"), "to_dir")
            .unwrap_err()
            .contains("absolute"));
        assert!(check_new_directory(dir.path(), "to_dir").is_ok());
        assert!(check_new_directory(&dir.path().join("new"), "to_dir").is_ok());
        assert!(check_new_directory(&dir.path().join("no/such"), "to_dir")
            .unwrap_err()
            .contains("parent"));
        std::fs::write(dir.path().join("x"), b"x").unwrap();
        assert!(check_new_directory(dir.path(), "to_dir")
            .unwrap_err()
            .contains("not empty"));
        assert!(check_new_directory(&dir.path().join("x"), "to_dir")
            .unwrap_err()
            .contains("a file"));
    }

    #[test]
    fn a_manifest_naming_a_path_outside_the_backup_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = Manifest {
            format: MANIFEST_FORMAT.into(),
            position: 0,
            started_at: String::new(),
            elapsed_ms: 0,
            node_id: "n".into(),
            anju_version: "0".into(),
            key_records: 0,
            files: vec![ManifestFile {
                path: "../etc/passwd".into(),
                bytes: 0,
                sha256: String::new(),
            }],
        };
        write_manifest(dir.path(), &manifest).unwrap();
        let error = read_manifest(dir.path()).unwrap_err().to_string();
        assert!(error.contains("not a plain relative path"), "{error}");
    }
}

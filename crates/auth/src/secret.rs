//! The token signing secret: 32 random bytes in a 0600 file in the data directory,
//! created on first start.

use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// File name of the secret inside the data directory.
pub const SECRET_FILE_NAME: &str = "token-secret";

/// Secrets shorter than this are refused: HS256 wants at least 256 bits of key.
const MIN_SECRET_LEN: usize = 32;

/// The HMAC key tokens are signed with. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps raw key bytes (tests and callers that keep the key elsewhere).
    pub fn from_bytes(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes, redacted)", self.0.len())
    }
}

/// Why the secret could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot create data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write secret file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read secret file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("secret file {path} holds {len} bytes, fewer than the {MIN_SECRET_LEN} needed: delete it to have a new one made (tokens issued with it stop working)")]
    TooShort { path: PathBuf, len: usize },
    #[error("the operating system's random source failed: {0}")]
    Random(String),
}

/// A secret and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedSecret {
    pub secret: Secret,
    pub path: PathBuf,
    /// True when this call made the file (first start): the caller should tell the
    /// operator how to issue a token.
    pub created: bool,
}

/// Reads a secret file written by [`load_or_create_secret`] (or any file of at least
/// 32 bytes).
pub fn read_secret_file(path: &Path) -> Result<Secret, SecretError> {
    let bytes = fs::read(path).map_err(|source| SecretError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.len() < MIN_SECRET_LEN {
        return Err(SecretError::TooShort {
            path: path.to_path_buf(),
            len: bytes.len(),
        });
    }
    Ok(Secret(bytes))
}

/// Reads `<data_dir>/token-secret`, creating the directory and a new random 32-byte
/// secret with mode 0600 when it does not exist yet.
pub fn load_or_create_secret(data_dir: &Path) -> Result<LoadedSecret, SecretError> {
    fs::create_dir_all(data_dir).map_err(|source| SecretError::CreateDir {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let path = data_dir.join(SECRET_FILE_NAME);
    let mut bytes = [0u8; MIN_SECRET_LEN];
    getrandom::fill(&mut bytes).map_err(|error| SecretError::Random(error.to_string()))?;
    // create_new makes two processes starting at once agree on one secret: the loser
    // gets AlreadyExists and reads the winner's file.
    let created = match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut file) => {
            let write = file.write_all(&bytes).and_then(|()| file.sync_all());
            write.map_err(|source| SecretError::Write {
                path: path.clone(),
                source,
            })?;
            true
        }
        Err(error) if error.kind() == ErrorKind::AlreadyExists => false,
        Err(source) => return Err(SecretError::Write { path, source }),
    };
    let secret = read_secret_file(&path)?;
    Ok(LoadedSecret {
        secret,
        path,
        created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn first_call_creates_a_private_secret_and_later_calls_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let first = load_or_create_secret(&data_dir).unwrap();
        assert!(first.created);
        assert_eq!(first.secret.as_bytes().len(), 32);
        let mode = fs::metadata(&first.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let second = load_or_create_secret(&data_dir).unwrap();
        assert!(!second.created);
        assert_eq!(second.secret, first.secret);
        assert_eq!(read_secret_file(&first.path).unwrap(), first.secret);
    }

    #[test]
    fn short_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short");
        fs::write(&path, b"tiny").unwrap();
        assert!(matches!(
            read_secret_file(&path),
            Err(SecretError::TooShort { len: 4, .. })
        ));
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let shown = format!("{:?}", Secret::from_bytes(vec![42; 32]));
        assert!(!shown.contains("42"), "{shown}");
    }
}

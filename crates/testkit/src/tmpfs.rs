//! A small tmpfs mounted on a temporary directory, for tests of a full disk. Mounting
//! needs root; without it the test fails with a message saying so (it is not skipped).
//! The file system is unmounted when the value is dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Tmpfs {
    mount_point: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` bytes; panics with the reason if it cannot.
    pub fn mount(bytes: u64) -> Tmpfs {
        let mount_point = tempfile::tempdir().expect("a directory to mount on");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "anju-test"])
            .arg(mount_point.path())
            .output()
            .expect("running mount");
        assert!(
            output.status.success(),
            "this test fills a small tmpfs and must run as root to mount one \
             (mount -t tmpfs -o size={bytes}): {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Tmpfs { mount_point }
    }

    pub fn path(&self) -> &Path {
        self.mount_point.path()
    }

    /// Writes a file of zeros at `path` until the file system is full (ENOSPC);
    /// answers the path. Deleting it frees the space again.
    pub fn fill(&self, name: &str) -> PathBuf {
        use std::io::Write;
        let path = self.path().join(name);
        let mut file = std::fs::File::create(&path).expect("filler file");
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        // Whatever a smaller write can still take.
        while let Ok(n) = file.write(&[0u8; 512]) {
            if n == 0 {
                break;
            }
        }
        while let Ok(n) = file.write(&[0u8]) {
            if n == 0 {
                break;
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let status = Command::new("umount")
            .arg("--lazy")
            .arg(self.mount_point.path())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("could not unmount {}", self.mount_point.path().display());
        }
    }
}

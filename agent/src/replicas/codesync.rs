//! A job's code put in place before a replica starts (`spec.codeSync`): a shallow git
//! clone or a copy of a directory on the node, into `<replica dir>/code`, once per
//! replica directory. The code lands in `code.partial` first and is renamed when
//! complete, so a half-finished sync is never taken for code.
//!
//! git runs as a child process the runtime waits on; the copy runs on the blocking
//! pool.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use cairn_domain::job::{CodeSync, GitSource};

/// Put the job's code in `<dir>/code`. `None` when the job has no code sync.
pub async fn sync_code(code: Option<&CodeSync>, dir: &Path) -> std::io::Result<Option<PathBuf>> {
    let Some(code) = code else {
        return Ok(None);
    };
    let dest = dir.join("code");
    if tokio::fs::try_exists(&dest).await? {
        return Ok(Some(dest));
    }
    let staging = dir.join("code.partial");
    // Left by a sync that did not finish, or not there.
    let _ = tokio::fs::remove_dir_all(&staging).await;
    match (&code.git, &code.directory) {
        (Some(git), _) => clone(git, &staging).await?,
        (None, Some(src)) => {
            let (src, to) = (PathBuf::from(src), staging.clone());
            tokio::task::spawn_blocking(move || copy_dir(&src, &to))
                .await
                .map_err(std::io::Error::other)??
        }
        (None, None) => return Err(std::io::Error::other("codeSync names no source")),
    }
    tokio::fs::rename(&staging, &dest).await?;
    Ok(Some(dest))
}

/// A shallow clone of the repository (at its branch or tag, if one is named).
async fn clone(git: &GitSource, to: &Path) -> std::io::Result<()> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.args(["clone", "--quiet", "--depth", "1"]);
    if let Some(r) = &git.reference {
        cmd.args(["--branch", r]);
    }
    let out = cmd
        .arg(&git.repository)
        .arg(to)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let why = stderr.trim();
    Err(std::io::Error::other(if why.is_empty() {
        format!("git clone: {}", out.status)
    } else {
        format!("git clone: {}: {why}", out.status)
    }))
}

/// Copy the directory `from` to `to` (created): files with their permissions, symbolic
/// links as links, subdirectories. Blocking.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dest) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_dir(&src, &dest)?;
            std::fs::set_permissions(&dest, std::fs::metadata(&src)?.permissions())?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dest)?;
        } else if kind.is_file() {
            std::fs::copy(&src, &dest)?;
        }
        // Sockets, pipes and devices are not code: left out.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn directory(path: &Path) -> CodeSync {
        CodeSync {
            git: None,
            directory: Some(path.display().to_string()),
        }
    }

    #[tokio::test]
    async fn no_code_sync_puts_nothing_in_place() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(sync_code(None, dir.path()).await.unwrap(), None);
        assert!(!dir.path().join("code").exists());
    }

    #[tokio::test]
    async fn a_directory_is_copied_with_modes_links_and_hidden_files() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("pkg/sub")).unwrap();
        std::fs::write(src.path().join("train.sh"), "echo hi\n").unwrap();
        std::fs::set_permissions(
            src.path().join("train.sh"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(src.path().join(".env"), "A=1\n").unwrap();
        std::fs::write(src.path().join("pkg/sub/m.py"), "x = 1\n").unwrap();
        std::os::unix::fs::symlink("pkg/sub/m.py", src.path().join("link.py")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let code = sync_code(Some(&directory(src.path())), dir.path())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(code, dir.path().join("code"));
        let mode = std::fs::metadata(code.join("train.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(std::fs::read_to_string(code.join(".env")).unwrap(), "A=1\n");
        assert_eq!(
            std::fs::read_to_string(code.join("pkg/sub/m.py")).unwrap(),
            "x = 1\n"
        );
        assert_eq!(
            std::fs::read_link(code.join("link.py")).unwrap(),
            Path::new("pkg/sub/m.py")
        );
        assert!(!dir.path().join("code.partial").exists());
        // --- once in place, it is not synced again
        std::fs::write(src.path().join("train.sh"), "echo changed\n").unwrap();
        sync_code(Some(&directory(src.path())), dir.path())
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(code.join("train.sh")).unwrap(),
            "echo hi\n"
        );
    }

    #[tokio::test]
    async fn a_missing_directory_or_repository_is_an_error_and_leaves_no_code() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nowhere");
        assert!(sync_code(Some(&directory(&missing)), dir.path())
            .await
            .is_err());
        let git = CodeSync {
            git: Some(GitSource {
                repository: missing.display().to_string(),
                reference: None,
            }),
            directory: None,
        };
        let e = sync_code(Some(&git), dir.path()).await.unwrap_err();
        assert!(e.to_string().starts_with("git clone: "), "{e}");
        assert!(!dir.path().join("code").exists());
    }
}

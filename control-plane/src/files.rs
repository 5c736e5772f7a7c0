//! Files the control plane makes: private to its user. Directories are
//! created 0700 and files 0600, whatever the process umask, so neither the
//! database nor a key file is ever readable by other local users, not even
//! for the instant between creation and a later `chmod`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and missing parents) with mode 0700. An existing
/// directory is left as it is: it may be shared (`/tmp`, `/var/lib`), and
/// the files made in it are private themselves.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Creates a new file with mode 0600; fails if it exists.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

/// Makes sure the SQLite database at `path` and its directory exist and are
/// private (0600 / 0700) before SQLite opens it; SQLite gives its `-wal` and
/// `-shm` files the database file's permissions.
pub fn prepare_sqlite_file(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)?;
    }
    match create_private_file(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o600))?;
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The file path of a `sqlite://PATH` URL (query string removed), or `None`
/// for an in-memory database or another backend.
pub fn sqlite_path(database_url: &str) -> Option<&Path> {
    let rest = database_url.strip_prefix("sqlite://").or_else(|| database_url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:" && !rest.contains("mode=memory")).then(|| Path::new(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(sqlite_path("sqlite://data/portcullis.db"), Some(Path::new("data/portcullis.db")));
        assert_eq!(sqlite_path("sqlite:///var/lib/p.db?mode=rwc"), Some(Path::new("/var/lib/p.db")));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("sqlite://:memory:"), None);
        assert_eq!(sqlite_path("sqlite://file.db?mode=memory"), None);
        assert_eq!(sqlite_path("postgres://u@h/db"), None);
    }

    #[test]
    fn a_world_readable_database_is_made_private_and_new_directories_are_0700() {
        let dir = std::env::temp_dir().join(format!("portcullis-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let db = dir.join("p.db");
        std::fs::write(&db, b"").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        prepare_sqlite_file(&db).unwrap();
        assert_eq!(std::fs::metadata(&db).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o755,
            "an existing directory is kept"
        );
        let fresh = dir.join("sub").join("new.db");
        prepare_sqlite_file(&fresh).unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(dir.join("sub")).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Running the operator's programs (script checks, VRRP track and notify
//! scripts) the one way the agent does it: directly (a shell only when the
//! configuration asks for `/bin/sh`), as an unprivileged user, with a bare
//! environment, in a process group of its own that is killed whole on a
//! timeout or when the caller gives up; and checking before they run that
//! they can run and are safe to (what keepalived's `enable_script_security`
//! checks, with the reason spelled out).

use std::{
    ffi::CString,
    io,
    mem::MaybeUninit,
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    ptr,
    time::Duration,
};

use tokio::{process::Command, time};

/// The whole environment of a script: the agent's own (sockets, tokens,
/// whatever systemd passed) is none of its business.
pub const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// How long to wait for a killed script to be reaped before giving up on it
/// (tokio reaps it later in the background).
const REAP_GRACE: Duration = Duration::from_secs(1);

/// A user's ids, as resolved from the passwd database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("script user \"{user}\" does not exist")]
    Unknown { user: String },
    #[error("looking up script user \"{user}\": {source}")]
    Lookup { user: String, source: io::Error },
}

/// Looks `user` up with `getpwnam_r`. May block on NSS (LDAP and the like):
/// call it when a script is configured, not on every run.
pub fn resolve_user(user: &str) -> Result<Account, UserError> {
    let unknown = || UserError::Unknown { user: user.to_owned() };
    let name = CString::new(user).map_err(|_| unknown())?;
    let mut buf_len = 1024;
    loop {
        let mut buf = vec![0 as libc::c_char; buf_len];
        let mut pwd = MaybeUninit::<libc::passwd>::uninit();
        let mut found: *mut libc::passwd = ptr::null_mut();
        // SAFETY: every pointer is valid for the call: `name` is
        // NUL-terminated, `pwd` is writable storage for one passwd, `buf` is
        // writable for `buf.len()` bytes and outlives our use of the strings
        // it backs (we copy only the two integer ids out), `found` is writable.
        let rc = unsafe { libc::getpwnam_r(name.as_ptr(), pwd.as_mut_ptr(), buf.as_mut_ptr(), buf.len(), &mut found) };
        if rc == libc::ERANGE && buf_len < 1 << 20 {
            buf_len *= 4;
            continue;
        }
        // Per getpwnam_r(3), these also mean "no such user" on some systems.
        if found.is_null() && matches!(rc, 0 | libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM) {
            return Err(unknown());
        }
        if rc != 0 {
            return Err(UserError::Lookup { user: user.to_owned(), source: io::Error::from_raw_os_error(rc) });
        }
        // SAFETY: on success with a non-null result, `found` points to `pwd`,
        // which getpwnam_r filled in.
        let pwd = unsafe { &*found };
        return Ok(Account { uid: pwd.pw_uid, gid: pwd.pw_gid });
    }
}

/// Why a program did not run to completion.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("command is empty")]
    Empty {},
    #[error("cannot run {program}: {}", spawn_reason(source))]
    Spawn { program: String, source: io::Error },
    #[error("waiting for {program}: {source}")]
    Wait { program: String, source: io::Error },
    #[error("{program} timed out after {timeout:?} and was killed")]
    TimedOut { program: String, timeout: Duration },
}

fn spawn_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied (is it executable by the script user?)".to_owned(),
        _ => e.to_string(),
    }
}

/// Runs `argv` as `account` and waits at most `timeout`. If the returned
/// future is dropped first (a check stopped, the agent shutting down) the
/// program's process group is killed all the same.
pub async fn run_as(argv: &[String], account: Account, timeout: Duration) -> Result<ExitStatus, RunError> {
    let (program, args) = argv.split_first().ok_or(RunError::Empty {})?;
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", PATH)
        // The agent's working directory may not be readable by the user.
        .current_dir("/")
        .stdin(Stdio::null())
        // Nobody reads the output; a pipe would stall a chatty script.
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group, so a timeout kills what it started too.
        .process_group(0)
        // std also drops the supplementary groups (setgroups(0)) when
        // switching user as root, so the script keeps none of the agent's.
        .uid(account.uid)
        .gid(account.gid)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| RunError::Spawn { program: program.clone(), source })?;
    // Until the child is reaped its pid cannot be reused, so killing its
    // group cannot hit another process; the guard also covers this future
    // being dropped while the program runs.
    let mut group = GroupKiller(child.id().and_then(|pid| i32::try_from(pid).ok()));
    match time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => {
            group.disarm();
            Ok(status)
        }
        Ok(Err(source)) => Err(RunError::Wait { program: program.clone(), source }),
        Err(_) => {
            group.kill();
            let _ = time::timeout(REAP_GRACE, child.wait()).await;
            group.disarm();
            Err(RunError::TimedOut { program: program.clone(), timeout })
        }
    }
}

/// Kills a script's process group when dropped, unless disarmed.
struct GroupKiller(Option<i32>);

impl GroupKiller {
    fn kill(&mut self) {
        if let Some(pgid) = self.0 {
            // SAFETY: killpg has no memory-safety preconditions. The group
            // leader is our unreaped child, so the id still names its group.
            unsafe { libc::killpg(pgid, libc::SIGKILL) };
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Why a program cannot, or must not, be run as its user.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unsafe {
    #[error("{program}: {reason}")]
    Missing { program: PathBuf, reason: String },
    #[error("{program} is not a regular file")]
    NotAFile { program: PathBuf },
    #[error("{program} is not executable by {user} (mode {mode:o}, owner uid {owner}, group gid {group})")]
    NotExecutable { program: PathBuf, user: String, mode: u32, owner: u32, group: u32 },
    #[error(
        "{program} runs as root, but {path} is writable by {who} (owner uid {owner}, mode {mode:o}): anyone who can \
         write it can run anything as root; make it root-owned and not group- or world-writable, or run the script \
         as an unprivileged user"
    )]
    WritableByOthers { program: PathBuf, path: PathBuf, who: &'static str, owner: u32, mode: u32 },
}

/// Checks that `program` (an absolute path) exists, is a regular file the
/// account can execute, and, when it runs as root, that no one but root can
/// replace it: neither the file nor any directory above it is owned by
/// another user or writable by a group or everyone. keepalived refuses such
/// scripts under `enable_script_security`; so do we, with the reason.
pub fn check_program(program: &Path, user: &str, account: Account) -> Result<(), Unsafe> {
    let meta = std::fs::metadata(program).map_err(|e| Unsafe::Missing {
        program: program.to_owned(),
        reason: match e.kind() {
            io::ErrorKind::NotFound => "no such file".to_owned(),
            _ => e.to_string(),
        },
    })?;
    if !meta.is_file() {
        return Err(Unsafe::NotAFile { program: program.to_owned() });
    }
    let mode = meta.permissions().mode() & 0o7777;
    let may_execute = if account.uid == 0 {
        mode & 0o111 != 0
    } else if meta.uid() == account.uid {
        mode & 0o100 != 0
    } else if meta.gid() == account.gid {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    };
    if !may_execute {
        return Err(Unsafe::NotExecutable {
            program: program.to_owned(),
            user: user.to_owned(),
            mode,
            owner: meta.uid(),
            group: meta.gid(),
        });
    }
    if account.uid != 0 {
        return Ok(());
    }
    // The file and every directory up to the root; symlinks are followed by
    // metadata(), which is what exec does too.
    let mut at = Some(program);
    while let Some(path) = at {
        if let Ok(m) = std::fs::metadata(path) {
            let mode = m.permissions().mode() & 0o7777;
            // A sticky directory (/tmp) only lets owners replace their own
            // entries; the entries themselves are checked on their own.
            let sticky_dir = m.is_dir() && mode & 0o1000 != 0;
            let who = if m.uid() != 0 {
                Some("its owner")
            } else if mode & 0o020 != 0 && m.gid() != 0 && !sticky_dir {
                Some("its group")
            } else if mode & 0o002 != 0 && !sticky_dir {
                Some("everyone")
            } else {
                None
            };
            if let Some(who) = who {
                return Err(Unsafe::WritableByOthers {
                    program: program.to_owned(),
                    path: path.to_owned(),
                    who,
                    owner: m.uid(),
                    mode,
                });
            }
        }
        at = path.parent();
    }
    Ok(())
}

/// What `lb check` and `lb run` ask of every configured program: its user
/// exists, and [`check_program`] passes.
pub fn check_configured(program: &str, user: &str) -> Result<(), String> {
    let account = resolve_user(user).map_err(|e| e.to_string())?;
    check_program(Path::new(program), user, account).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use crate::testing::{Privilege, privileged};

    const ROOT: Account = Account { uid: 0, gid: 0 };

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lb-script-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    fn file(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn system_programs_are_fine_for_root_and_nobody() {
        let nobody = resolve_user("nobody").unwrap();
        check_program(Path::new("/bin/true"), "root", ROOT).unwrap();
        check_program(Path::new("/bin/true"), "nobody", nobody).unwrap();
    }

    #[test]
    fn missing_directory_and_unexecutable_are_refused() {
        if !privileged(&[Privilege::Root]) {
            return;
        }
        let dir = scratch("basic");
        let nobody = resolve_user("nobody").unwrap();
        let e = check_program(&dir.join("nope"), "nobody", nobody).unwrap_err();
        assert!(matches!(e, Unsafe::Missing { .. }), "{e}");
        assert!(e.to_string().ends_with("nope: no such file"), "{e}");
        assert_eq!(check_program(&dir, "nobody", nobody).unwrap_err(), Unsafe::NotAFile { program: dir.clone() });
        // Root may execute it (0o700, owner root), nobody may not.
        let private = file(&dir, "private", 0o700);
        check_program(&private, "root", ROOT).unwrap();
        let e = check_program(&private, "nobody", nobody).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{} is not executable by nobody (mode 700, owner uid 0, group gid 0)", private.display())
        );
        let plain = file(&dir, "plain", 0o644);
        assert!(matches!(check_program(&plain, "root", ROOT).unwrap_err(), Unsafe::NotExecutable { .. }));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn root_scripts_must_not_be_replaceable_by_others() {
        if !privileged(&[Privilege::Root, Privilege::Chown]) {
            return;
        }
        let dir = scratch("security");
        let group_writable = file(&dir, "gw", 0o775);
        // gid 0 owns it here, so a group-writable root:root file is root's alone.
        check_program(&group_writable, "root", ROOT).unwrap();
        let world = file(&dir, "ww", 0o757);
        let e = check_program(&world, "root", ROOT).unwrap_err();
        assert!(matches!(e, Unsafe::WritableByOthers { who: "everyone", .. }), "{e}");
        // Owned by nobody: nobody could rewrite what root runs.
        let nobody = resolve_user("nobody").unwrap();
        let owned = file(&dir, "owned", 0o755);
        std::os::unix::fs::chown(&owned, Some(nobody.uid), None).unwrap();
        let e = check_program(&owned, "root", ROOT).unwrap_err();
        assert!(matches!(e, Unsafe::WritableByOthers { who: "its owner", .. }), "{e}");
        // ...but as nobody it is theirs to run.
        check_program(&owned, "nobody", nobody).unwrap();
        // A world-writable directory above it lets anyone swap the file.
        let open = dir.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let inside = file(&open, "s", 0o755);
        let e = check_program(&inside, "root", ROOT).unwrap_err();
        assert!(matches!(&e, Unsafe::WritableByOthers { path, .. } if *path == open), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn run_as_reports_exit_timeout_and_spawn_failures() {
        if !privileged(&[Privilege::SetUid, Privilege::SetGid]) {
            return;
        }
        let nobody = resolve_user("nobody").unwrap();
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let st = run_as(&argv(&["/bin/sh", "-c", "exit 3"]), nobody, Duration::from_secs(5)).await.unwrap();
        assert_eq!(st.code(), Some(3));
        let e = run_as(&argv(&["/bin/sleep", "5"]), nobody, Duration::from_millis(100)).await.unwrap_err();
        assert!(matches!(e, RunError::TimedOut { .. }), "{e}");
        let e = run_as(&argv(&["/nonexistent"]), nobody, Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(e, RunError::Spawn { .. }), "{e}");
        assert!(matches!(run_as(&[], nobody, Duration::from_secs(1)).await, Err(RunError::Empty {})));
    }
}

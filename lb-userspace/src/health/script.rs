//! `MISC_CHECK`: run a program as an unprivileged user; exit 0 = up, 1 =
//! down, and with `dynamic_weight` 2..=255 = up with weight `status - 2`.

use std::{
    ffi::CString,
    io,
    mem::MaybeUninit,
    os::unix::process::ExitStatusExt,
    process::{ExitStatus, Stdio},
    ptr,
    time::Duration,
};

use tokio::{process::Command, time};

use super::{CheckResult, HealthError, io_reason, show_duration};
use crate::config::{ScriptCheck, ScriptCommand};

/// The whole environment of a script: the agent's own (sockets, tokens,
/// whatever systemd passed) is none of its business.
const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// How long to wait for a killed script to be reaped before giving up on it
/// (tokio reaps it later in the background).
const REAP_GRACE: Duration = Duration::from_secs(1);

/// A user's ids, as resolved from the passwd database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Account {
    pub uid: u32,
    pub gid: u32,
}

/// Looks `user` up with `getpwnam_r`. May block on NSS (LDAP and the like):
/// call it when a check is configured, not on every run.
pub fn resolve_user(user: &str) -> Result<Account, HealthError> {
    let unknown = || HealthError::UnknownUser { user: user.to_owned() };
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
            return Err(HealthError::UserLookup { user: user.to_owned(), source: io::Error::from_raw_os_error(rc) });
        }
        // SAFETY: on success with a non-null result, `found` points to `pwd`,
        // which getpwnam_r filled in.
        let pwd = unsafe { &*found };
        return Ok(Account { uid: pwd.pw_uid, gid: pwd.pw_gid });
    }
}

pub(super) struct ScriptProbe {
    program: String,
    args: Vec<String>,
    user: String,
    account: Account,
    dynamic_weight: bool,
}

impl ScriptProbe {
    pub(super) fn new(check: &ScriptCheck) -> Result<ScriptProbe, HealthError> {
        let account = resolve_user(&check.user)?;
        let (program, args) = match &check.command {
            ScriptCommand::Argv(argv) => {
                let (program, args) = argv.split_first().ok_or(HealthError::EmptyCommand {})?;
                (program.clone(), args.to_vec())
            }
            ScriptCommand::Shell(line) => (String::from("/bin/sh"), vec![String::from("-c"), line.clone()]),
        };
        Ok(ScriptProbe { program, args, user: check.user.clone(), account, dynamic_weight: check.dynamic_weight })
    }

    pub(super) async fn run(&self, timeout: Duration) -> CheckResult {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
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
            .uid(self.account.uid)
            .gid(self.account.gid)
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                return CheckResult::down(format!("cannot run {} as {}: {}", self.program, self.user, io_reason(&e)));
            }
        };
        // Until the child is reaped its pid cannot be reused, so killing its
        // group cannot hit another process; the guard also covers the task
        // being stopped while the script runs.
        let mut group = GroupKiller(child.id().and_then(|pid| i32::try_from(pid).ok()));
        match time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => {
                group.disarm();
                self.judge(status)
            }
            Ok(Err(e)) => CheckResult::down(format!("waiting for {}: {}", self.program, io_reason(&e))),
            Err(_) => {
                group.kill();
                let _ = time::timeout(REAP_GRACE, child.wait()).await;
                group.disarm();
                CheckResult::down(format!("timeout after {}: script killed", show_duration(timeout)))
            }
        }
    }

    fn judge(&self, status: ExitStatus) -> CheckResult {
        match status.code() {
            Some(0) => CheckResult::up("script exited 0"),
            Some(code @ 2..=255) if self.dynamic_weight => {
                let weight = code as u32 - 2;
                CheckResult {
                    ok: true,
                    weight: Some(weight),
                    reason: format!("script exited {code} (weight {weight})").into(),
                }
            }
            Some(code) => CheckResult::down(format!("script exited {code}")),
            None => match status.signal() {
                Some(signal) => CheckResult::down(format!("script killed by signal {signal}")),
                None => CheckResult::down(format!("script ended with {status}")),
            },
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

#[cfg(test)]
mod tests {
    use std::{os::unix::fs::PermissionsExt, path::PathBuf, time::Duration};

    use super::*;
    use crate::{
        config::CheckKind,
        health::testutil::{LOCALHOST, check, expect_event, monitor, target},
    };

    fn script(command: ScriptCommand, dynamic_weight: bool) -> CheckKind {
        CheckKind::Script(ScriptCheck { command, user: String::from("nobody"), dynamic_weight })
    }

    fn argv(args: &[&str]) -> ScriptCommand {
        ScriptCommand::Argv(args.iter().map(|s| s.to_string()).collect())
    }

    #[tokio::test]
    async fn true_is_up_false_is_down() {
        let (mut monitor, mut rx) = monitor();
        monitor.start(target(1, check(script(argv(&["/bin/true"]), false)), false)).unwrap();
        monitor.start(target(2, check(script(argv(&["/bin/false"]), false)), true)).unwrap();
        let mut events =
            [expect_event(&mut rx, Duration::from_secs(5)).await, expect_event(&mut rx, Duration::from_secs(5)).await];
        events.sort_by_key(|e| e.target);
        assert!(events[0].up);
        assert_eq!(events[0].reason, "script exited 0");
        assert!(!events[1].up);
        assert_eq!(events[1].reason, "script exited 1");
        monitor.shutdown().await;
    }

    #[tokio::test]
    async fn dynamic_weight_is_status_minus_two() {
        let (mut monitor, mut rx) = monitor();
        monitor.start(target(1, check(script(argv(&["/bin/sh", "-c", "exit 7"]), true)), false)).unwrap();
        let up = expect_event(&mut rx, Duration::from_secs(5)).await;
        assert!(up.up);
        assert_eq!(up.weight, Some(5));
        assert_eq!(up.reason, "script exited 7 (weight 5)");
        // Without misc_dynamic any status but 0 is a failure.
        let plain = monitor.probe_once(LOCALHOST, &check(script(argv(&["/bin/sh", "-c", "exit 7"]), false))).await;
        assert_eq!(plain.unwrap(), CheckResult::down("script exited 7"));
    }

    #[tokio::test]
    async fn runs_as_the_script_user_with_a_bare_environment() {
        let nobody = resolve_user("nobody").unwrap();
        let line = format!(
            r#"test "$(id -u)" = {} && test "$(id -G)" = {} && test "$PATH" = {PATH} && test -z "$HOME" && test "$(pwd)" = /"#,
            nobody.uid, nobody.gid
        );
        let (mut monitor, _rx) = monitor();
        let result = monitor.probe_once(LOCALHOST, &check(script(ScriptCommand::Shell(line), false))).await.unwrap();
        assert_eq!(result, CheckResult::up("script exited 0"));
    }

    #[tokio::test]
    async fn an_unknown_user_is_refused_with_its_name() {
        let (mut monitor, _rx) = monitor();
        let mut c = check(script(argv(&["/bin/true"]), false));
        if let CheckKind::Script(s) = &mut c.kind {
            s.user = String::from("no-such-user-lb-test");
        }
        let err = monitor.start(target(1, c, true)).unwrap_err();
        assert_eq!(err.to_string(), "script user \"no-such-user-lb-test\" does not exist");
        assert_eq!(monitor.targets().count(), 0);
    }

    #[tokio::test]
    async fn a_missing_program_is_down_with_its_path() {
        let (mut monitor, _rx) = monitor();
        let result = monitor.probe_once(LOCALHOST, &check(script(argv(&["/nonexistent/check"]), false))).await.unwrap();
        assert_eq!(result, CheckResult::down("cannot run /nonexistent/check as nobody: no such file or directory"));
    }

    /// A directory the script user can write its pid file into.
    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lb-health-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        dir
    }

    /// Gone, or a zombie waiting for a reaper (a container's init may not reap).
    fn process_gone(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
        }
    }

    async fn wait_gone(pid: i32) {
        for _ in 0..200 {
            if process_gone(pid) {
                return;
            }
            time::sleep(Duration::from_millis(10)).await;
        }
        panic!("process {pid} still alive");
    }

    async fn read_pids(dir: &std::path::Path) -> (i32, i32) {
        for _ in 0..200 {
            if let Ok(text) = std::fs::read_to_string(dir.join("pids"))
                && let [shell, sleeper] = text.split_whitespace().collect::<Vec<_>>()[..]
            {
                return (shell.parse().unwrap(), sleeper.parse().unwrap());
            }
            time::sleep(Duration::from_millis(10)).await;
        }
        panic!("script did not write its pids");
    }

    /// A script that starts a background child and outlives any timeout.
    fn sleeper(dir: &std::path::Path) -> CheckKind {
        let line = format!("sleep 30 & echo $$ $! > {}/pids.tmp && mv {0}/pids.tmp {0}/pids; wait", dir.display());
        script(ScriptCommand::Shell(line), false)
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_process_group() {
        let dir = scratch_dir("timeout");
        let mut c = check(sleeper(&dir));
        c.timeout = Duration::from_millis(500);
        let (mut monitor, mut rx) = monitor();
        let started = time::Instant::now();
        monitor.start(target(1, c, true)).unwrap();
        let down = expect_event(&mut rx, Duration::from_secs(5)).await;
        assert!(!down.up);
        assert_eq!(down.reason, "timeout after 500ms: script killed");
        assert!(started.elapsed() < Duration::from_secs(3));
        let (shell, sleeper) = read_pids(&dir).await;
        wait_gone(shell).await;
        wait_gone(sleeper).await;
        monitor.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn stopping_a_target_kills_its_running_script() {
        let dir = scratch_dir("stop");
        let mut c = check(sleeper(&dir));
        c.timeout = Duration::from_secs(60);
        let (mut monitor, _rx) = monitor();
        monitor.start(target(1, c, true)).unwrap();
        let (shell, sleeper) = read_pids(&dir).await;
        monitor.shutdown().await;
        wait_gone(shell).await;
        wait_gone(sleeper).await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}

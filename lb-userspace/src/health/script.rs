//! `MISC_CHECK`: run a program as an unprivileged user; exit 0 = up, 1 =
//! down, and with `dynamic_weight` 2..=255 = up with weight `status - 2`.

use std::{os::unix::process::ExitStatusExt, process::ExitStatus, time::Duration};

use super::{CheckResult, HealthError, io_reason, show_duration};
use crate::{
    config::{ScriptCheck, ScriptCommand},
    script::{Account, RunError, resolve_user, run_as},
};

pub(super) struct ScriptProbe {
    argv: Vec<String>,
    user: String,
    account: Account,
    dynamic_weight: bool,
}

impl ScriptProbe {
    pub(super) fn new(check: &ScriptCheck) -> Result<ScriptProbe, HealthError> {
        let account = resolve_user(&check.user)?;
        let argv = match &check.command {
            ScriptCommand::Argv(argv) if argv.is_empty() => return Err(HealthError::EmptyCommand {}),
            ScriptCommand::Argv(argv) => argv.clone(),
            ScriptCommand::Shell(line) => vec![String::from("/bin/sh"), String::from("-c"), line.clone()],
        };
        Ok(ScriptProbe { argv, user: check.user.clone(), account, dynamic_weight: check.dynamic_weight })
    }

    pub(super) async fn run(&self, timeout: Duration) -> CheckResult {
        match run_as(&self.argv, self.account, timeout).await {
            Ok(status) => self.judge(status),
            Err(RunError::Spawn { program, source }) => {
                CheckResult::down(format!("cannot run {program} as {}: {}", self.user, io_reason(&source)))
            }
            Err(RunError::Wait { program, source }) => {
                CheckResult::down(format!("waiting for {program}: {}", io_reason(&source)))
            }
            Err(RunError::TimedOut { .. }) => {
                CheckResult::down(format!("timeout after {}: script killed", show_duration(timeout)))
            }
            Err(e @ RunError::Empty {}) => CheckResult::down(e.to_string()),
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

#[cfg(test)]
mod tests {
    use std::{os::unix::fs::PermissionsExt, path::PathBuf, time::Duration};

    use tokio::time;

    use super::*;
    use crate::{
        config::CheckKind,
        health::testutil::{LOCALHOST, check, expect_event, monitor, target},
        script::PATH,
        testing::{Privilege, privileged},
    };

    /// Scripts run as `nobody`.
    const RUN_AS: &[Privilege] = &[Privilege::SetUid, Privilege::SetGid];

    fn script(command: ScriptCommand, dynamic_weight: bool) -> CheckKind {
        CheckKind::Script(ScriptCheck {
            command,
            user: String::from("nobody"),
            dynamic_weight,
            command_at: Default::default(),
        })
    }

    fn argv(args: &[&str]) -> ScriptCommand {
        ScriptCommand::Argv(args.iter().map(|s| s.to_string()).collect())
    }

    #[tokio::test]
    async fn true_is_up_false_is_down() {
        if !privileged(RUN_AS) {
            return;
        }
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
        if !privileged(RUN_AS) {
            return;
        }
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
        if !privileged(RUN_AS) {
            return;
        }
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
        if !privileged(RUN_AS) {
            return;
        }
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
        if !privileged(RUN_AS) {
            return;
        }
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
        if !privileged(RUN_AS) {
            return;
        }
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

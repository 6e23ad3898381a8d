//! Login sub-jobs: argv without a shell, explicit shell text, exit codes, timeouts, bounded
//! output, parameters only through the environment.

use hpcsera_agent::batch::login::{run_login, LoginError, LoginRequest};
use hpcsera_agent::config::LoginCommand;
use std::path::Path;
use std::time::{Duration, Instant};

fn req(dir: &Path, command: LoginCommand, timeout: u64) -> LoginRequest {
    LoginRequest {
        command,
        env: vec![
            ("HPCSERA_JOB_ID".into(), "j1".into()),
            (
                "HPCSERA_PARAM_x".into(),
                "a 'b' \"c\" $(touch pwned) `touch pwned` ;touch pwned\nz".into(),
            ),
        ],
        work_dir: dir.join("job"),
        timeout: Duration::from_secs(timeout),
        stdout_path: dir.join("out.txt"),
        stderr_path: dir.join("err.txt"),
        max_output_bytes: 1000,
    }
}

fn argv(v: &[&str]) -> LoginCommand {
    LoginCommand::Argv(v.iter().map(|s| s.to_string()).collect())
}

#[tokio::test]
async fn success_with_output_in_the_work_dir() {
    let d = tempfile::tempdir().unwrap();
    let r = req(d.path(), argv(&["/bin/sh", "-c", "pwd; echo err >&2"]), 10);
    let out = run_login(&r).await.unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.describe(), "succeeded");
    let pwd = std::fs::read_to_string(&r.stdout_path).unwrap();
    assert_eq!(
        Path::new(pwd.trim()).canonicalize().unwrap(),
        d.path().join("job").canonicalize().unwrap()
    );
    assert_eq!(std::fs::read_to_string(&r.stderr_path).unwrap(), "err\n");
}

#[tokio::test]
async fn argv_gets_no_shell_and_parameters_via_env() {
    let d = tempfile::tempdir().unwrap();
    // printenv prints the value; with no shell, "$HPCSERA_PARAM_x" in argv stays literal.
    let r = req(d.path(), argv(&["printenv", "HPCSERA_PARAM_x"]), 10);
    run_login(&r).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&r.stdout_path).unwrap(),
        "a 'b' \"c\" $(touch pwned) `touch pwned` ;touch pwned\nz\n"
    );
    let r = req(d.path(), argv(&["echo", "$HPCSERA_PARAM_x", "$(id)"]), 10);
    run_login(&r).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(&r.stdout_path).unwrap(),
        "$HPCSERA_PARAM_x $(id)\n"
    );
    // Explicit shell text sees the parameter only as a variable; it is not re-evaluated.
    let r = req(
        d.path(),
        LoginCommand::Shell("printf '%s' \"$HPCSERA_PARAM_x\"; echo; echo $HPCSERA_PARAM_x".into()),
        10,
    );
    run_login(&r).await.unwrap();
    let out = std::fs::read_to_string(&r.stdout_path).unwrap();
    assert!(out.starts_with("a 'b' \"c\" $(touch pwned)"), "{out}");
    assert!(!d.path().join("job/pwned").exists());
}

#[tokio::test]
async fn non_zero_exit() {
    let d = tempfile::tempdir().unwrap();
    let out = run_login(&req(d.path(), argv(&["/bin/sh", "-c", "exit 4"]), 10))
        .await
        .unwrap();
    assert_eq!(out.exit_code, Some(4));
    assert!(!out.success());
    assert_eq!(out.describe(), "exited with code 4");
    let out = run_login(&req(
        d.path(),
        argv(&["/bin/sh", "-c", "kill -KILL $$"]),
        10,
    ))
    .await
    .unwrap();
    assert_eq!((out.exit_code, out.signal), (None, Some(9)));
    assert_eq!(out.describe(), "killed by signal 9");
    let e = run_login(&req(d.path(), argv(&["/nonexistent/tool"]), 10))
        .await
        .unwrap_err();
    assert!(
        matches!(e, LoginError::Spawn { .. }) && e.to_string().contains("/nonexistent/tool"),
        "{e}"
    );
}

#[tokio::test]
async fn timeout_kills_the_process_group() {
    let d = tempfile::tempdir().unwrap();
    // A background grandchild that ignores nothing, and a foreground sleep.
    let r = req(
        d.path(),
        argv(&[
            "/bin/sh",
            "-c",
            "sleep 300 & echo $! > bg.pid; echo started; sleep 300",
        ]),
        1,
    );
    let start = Instant::now();
    let e = run_login(&r).await.unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(e, LoginError::TimedOut { seconds: 1 }), "{e}");
    assert_eq!(
        e.to_string(),
        "timed out after 1 s; the process group was killed"
    );
    assert_eq!(
        std::fs::read_to_string(&r.stdout_path).unwrap(),
        "started\n"
    );
    let bg: i32 = std::fs::read_to_string(d.path().join("job/bg.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let start = Instant::now();
    // The background sleep was killed too (it may linger as a zombie of init briefly).
    loop {
        let alive = std::fs::read_to_string(format!("/proc/{bg}/stat"))
            .map(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false);
        if !alive {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "background process {bg} survived"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn output_is_bounded() {
    let d = tempfile::tempdir().unwrap();
    let r = req(d.path(), argv(&["head", "-c", "100000", "/dev/zero"]), 10);
    let out = run_login(&r).await.unwrap();
    assert!(out.success());
    assert!(out.stdout_truncated && !out.stderr_truncated);
    assert_eq!(std::fs::metadata(&r.stdout_path).unwrap().len(), 1000);
}

//! The deployment files under `deploy/`, as an operator would use them: the systemd units pass
//! `systemd-analyze verify` (no running systemd needed; `ExecStart` points at the binary under
//! test in a temporary copy) and the server unit's offline security review; the example agent
//! configs parse; the cron lines run as written (paths swapped for the test's).

use crate::common::{bin, fresh};
use crate::test_server::serve;
use hpcsera_store::Store;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// `systemd-analyze ARGS`: (success, stdout + stderr).
fn analyze(args: &[&str], runtime_dir: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .output()
        .expect("systemd-analyze (Debian package systemd) must be installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_systemd_units_verify() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    let binary = bin().display().to_string();
    let server_text = std::fs::read_to_string(deploy().join("systemd/hpcsera-server.service"))
        .unwrap()
        .replace("/usr/local/bin/hpcsera", &binary);
    let server = dir.path().join("hpcsera-server.service");
    std::fs::write(&server, &server_text).unwrap();
    let s = server.to_str().unwrap();
    let (ok, text) = analyze(&["verify", "--man=no", s], &runtime);
    assert!(ok && text.trim().is_empty(), "{text}");
    // The hardening holds up in systemd's own review (exposure at most 2.0 of 10).
    let (ok, text) = analyze(
        &["security", "--offline=true", "--threshold=20", s],
        &runtime,
    );
    assert!(ok, "{text}");
    for line in [
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(server_text.contains(line), "the server unit lacks {line:?}");
    }

    let agent = dir.path().join("hpcsera-agent.service");
    std::fs::write(
        &agent,
        std::fs::read_to_string(deploy().join("systemd/hpcsera-agent.service"))
            .unwrap()
            .replace("%h/.cargo/bin/hpcsera", &binary),
    )
    .unwrap();
    let (ok, text) = analyze(
        &["--user", "verify", "--man=no", agent.to_str().unwrap()],
        &runtime,
    );
    assert!(ok && text.trim().is_empty(), "{text}");
    // A unit whose binary is missing fails: the check is real.
    let broken = dir.path().join("broken.service");
    std::fs::write(
        &broken,
        server_text.replace(&binary, "/nonexistent/hpcsera"),
    )
    .unwrap();
    let (ok, text) = analyze(&["verify", "--man=no", broken.to_str().unwrap()], &runtime);
    assert!(!ok, "{text}");
}

/// The agent unit's command line, with `%h` a home that has the binary and a config.
#[test]
fn the_agent_units_command_line_runs() {
    let home = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(deploy().join("systemd/hpcsera-agent.service")).unwrap();
    let exec = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap()
        .replace("%h", home.path().to_str().unwrap());
    std::fs::create_dir_all(home.path().join(".cargo/bin")).unwrap();
    std::os::unix::fs::symlink(bin(), home.path().join(".cargo/bin/hpcsera")).unwrap();
    std::fs::create_dir_all(home.path().join(".config/hpcsera")).unwrap();
    std::fs::copy(
        deploy().join("agent/slurm.toml"),
        home.path().join(".config/hpcsera/agent.toml"),
    )
    .unwrap();
    let argv: Vec<&str> = exec.split_whitespace().collect();
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .arg("--check")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("site example-slurm"), "{stdout}");
}

#[test]
fn the_example_agent_configs_parse() {
    for (file, preset) in [
        ("agent/slurm.toml", "slurm"),
        ("agent/pbs.toml", "pbs"),
        ("agent/lsf.toml", "lsf"),
    ] {
        let path = deploy().join(file);
        let cfg = hpcsera_agent::AgentConfig::load(&path)
            .unwrap_or_else(|e| panic!("{file}: {e} {:?}", e.problems()));
        assert_eq!(cfg.batch.preset.as_str(), preset, "{file}");
        assert!(cfg.ca_file.is_some(), "{file} shows ca_file");
        assert!(!cfg.job_types.is_empty(), "{file}");
        let out = Command::new(bin())
            .args(["agent", "--check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A relative ca_file is refused with its line.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(deploy().join("agent/lsf.toml"))
        .unwrap()
        .replace("ca_file = \"/etc/", "ca_file = \"etc/");
    std::fs::write(&bad, text).unwrap();
    let err = hpcsera_agent::AgentConfig::load(&bad).unwrap_err();
    let problems = err.problems();
    assert!(
        problems.iter().any(|p| p.key == "ca_file" && p.line == 6),
        "{problems:?}"
    );
}

/// The environment lines and the commands of a crontab file, each job line's schedule checked;
/// with `user` (an /etc/cron.d file) the sixth field is the user, `hpcsera`.
fn cron_jobs(text: &str, user: bool) -> (Vec<(String, String)>, Vec<String>) {
    let mut env = Vec::new();
    let mut jobs = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line.split_whitespace().next().unwrap();
        if first.contains('=') {
            let (k, v) = line.split_once('=').unwrap();
            env.push((k.to_string(), v.to_string()));
            continue;
        }
        let mut parts = line.split_whitespace();
        for _ in 0..5 {
            let f = parts.next().unwrap();
            assert!(
                f.split(',').all(|p| {
                    let (range, step) = p.split_once('/').unwrap_or((p, "1"));
                    step.parse::<u32>().is_ok()
                        && (range == "*" || range.split('-').all(|n| n.parse::<u32>().is_ok()))
                }),
                "bad schedule field {f:?} in {line:?}"
            );
        }
        if user {
            assert_eq!(parts.next(), Some("hpcsera"), "{line}");
        }
        let command: Vec<&str> = parts.collect();
        assert!(!command.is_empty(), "{line}");
        jobs.push(command.join(" "));
    }
    (env, jobs)
}

#[tokio::test]
async fn the_cron_lines_run_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = fresh::fresh_database(dir.path()).await;
    let store = Store::connect(&db_url).await.unwrap();
    let (client_token, agent_token) = crate::common::alice_in_p(&store, "cron-site", "c").await;
    let url = serve(Default::default(), store.clone()).await;

    // The agent's line, with $HOME a home that has the binary, a config and a token.
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".cargo/bin")).unwrap();
    std::os::unix::fs::symlink(bin(), home.join(".cargo/bin/hpcsera")).unwrap();
    let conf_dir = home.join(".config/hpcsera");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let token_file = conf_dir.join("agent.token");
    std::fs::write(&token_file, &agent_token).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        conf_dir.join("agent.toml"),
        format!(
            "server_url = {url:?}\ntoken_file = {:?}\nsite = \"cron-site\"\nwork_dir = {:?}\n\
             [poll]\nlong_poll_seconds = 1\n[batch]\npreset = \"local\"\n\
             [[job_types]]\nname = \"hello\"\n[[job_types.sub_jobs]]\nname = \"run\"\n\
             kind = \"login\"\ncommand = [\"true\"]\n",
            token_file.display().to_string(),
            dir.path().join("work").display().to_string()
        ),
    )
    .unwrap();
    let text = std::fs::read_to_string(deploy().join("cron/hpcsera-agent.cron")).unwrap();
    let (_, jobs) = cron_jobs(&text, false);
    assert_eq!(jobs.len(), 1);
    let status = tokio::process::Command::new("/bin/sh")
        .args(["-c", &jobs[0]])
        .env("HOME", &home)
        .status()
        .await
        .unwrap();
    let log = std::fs::read_to_string(conf_dir.join("agent.log")).unwrap_or_default();
    assert!(status.success(), "{log}");
    let client = hpcsera_client::Client::new(&url, &client_token).unwrap();
    assert_eq!(
        client.job_types("cron-site").await.unwrap().len(),
        1,
        "{log}"
    );
    // Jobs run to their end by the cron line alone (login steps included).
    let job = client
        .submit(
            &hpcsera_api_types::NewJob {
                site: "cron-site".into(),
                job_type: "hello".into(),
                parameters: Default::default(),
                resources: Default::default(),
                metadata: None,
                callback_url: None,
            },
            None,
        )
        .await
        .unwrap();
    let mut status = job.status;
    for _ in 0..5 {
        let ok = tokio::process::Command::new("/bin/sh")
            .args(["-c", &jobs[0]])
            .env("HOME", &home)
            .status()
            .await
            .unwrap();
        assert!(ok.success());
        status = client.get_job(&job.id).await.unwrap().status;
        if status.is_terminal() {
            break;
        }
    }
    let log = std::fs::read_to_string(conf_dir.join("agent.log")).unwrap_or_default();
    assert_eq!(status, hpcsera_api_types::JobStatus::Completed, "{log}");

    // The retention lines, with the server's environment file in a temporary place.
    let env_file = dir.path().join("server.env");
    std::fs::write(
        &env_file,
        format!(
            "HPCSERA_DATABASE_URL={db_url}\nHPCSERA_DATA_DIR={}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let text = std::fs::read_to_string(deploy().join("cron/hpcsera-retention.cron")).unwrap();
    let (env, jobs) = cron_jobs(&text, true);
    assert_eq!(jobs.len(), 2);
    for job in jobs {
        let command = job
            .replace("/usr/local/bin/hpcsera", bin().to_str().unwrap())
            .replace("/etc/hpcsera/server.env", env_file.to_str().unwrap());
        let out = tokio::process::Command::new("/bin/sh")
            .args(["-c", &command])
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{command}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("deleted"), "{stdout}");
    }
}

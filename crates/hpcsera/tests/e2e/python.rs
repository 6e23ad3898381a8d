//! The spec checks and the Python clients against a real server and agent (issue 16): the
//! generators take `openapi.json` without a warning or an error, a client generated from it
//! (not edited) runs the job flow, schemathesis finds nothing with an all-roles token and with
//! an agent token, and the Python SDK (`clients/python`, installed with pip) passes its
//! pytest suite, README example included.
//!
//! The tools are PyPI's `openapi-python-client`, `openapi-generator-cli` (Java), `schemathesis`,
//! `pytest` and `pytest-asyncio`, and `hatchling` to build the SDK; `scripts/test.sh` installs
//! them (`ensure_python_tools`). Without them these tests fail, never skip. Every tool runs
//! under a time limit and is killed at its end, so nothing is left running.

use crate::common::{bin, sleep_and_later_job_types, Env, Opts};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The site of `hpcsera dev`, so that the SDK's README example runs as written.
const SITE: &str = "local";
/// A person with a password, member of the tests' project, who approves the SDK's device
/// login in the web UI.
const PERSON: (&str, &str) = ("bob", "a long test password");

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The job types of these tests: `greet`, `noop` (python.toml), `hello` (`hpcsera dev`'s),
/// `sleep` and `later`.
fn job_types() -> String {
    format!(
        "{}\n{}\n{}",
        include_str!("../../fixtures/job_types/python.toml"),
        include_str!("../../fixtures/job_types/hello.toml"),
        sleep_and_later_job_types()
    )
}

/// Runs `program args…` in `dir` with `envs`, at most `limit`; returns whether it succeeded and
/// its stdout and stderr together. A missing tool fails the test (it is installed in CI).
async fn run(
    program: &str,
    args: &[&str],
    dir: &Path,
    envs: &[(&str, &str)],
    limit: Duration,
) -> (bool, String) {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} (scripts/test.sh installs it): {e}"));
    let started = Instant::now();
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} took longer than {limit:?}"))
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "{program} {args:?}: {:?} in {:.1?}",
        out.status,
        started.elapsed()
    );
    (out.status.success(), text)
}

/// The agent token the set-up wrote for the agent.
fn agent_token(env: &Env) -> String {
    std::fs::read_to_string(env.path().join("agent.token"))
        .unwrap()
        .trim()
        .to_string()
}

/// openapi-python-client generates a client from the checked-in spec without a warning.
async fn generate_client(out: &Path) -> String {
    let spec = repo().join("openapi.json");
    let config = repo().join("clients/spec-checks/openapi-python-client.yaml");
    let (ok, text) = run(
        "openapi-python-client",
        &[
            "generate",
            "--path",
            spec.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--meta",
            "none",
            "--output-path",
            out.join("hpcsera_api").to_str().unwrap(),
        ],
        out,
        &[],
        Duration::from_secs(180),
    )
    .await;
    assert!(ok, "openapi-python-client failed:\n{text}");
    assert!(
        !text.to_lowercase().contains("warning") && !text.contains("Unable to"),
        "openapi-python-client warned:\n{text}"
    );
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_python_client_runs_the_job_flow() {
    let env = Env::new(SITE, &job_types()).await;
    let gen = tempfile::tempdir().unwrap();
    generate_client(gen.path()).await;
    let script = repo().join("clients/spec-checks/generated_flow.py");
    let (ok, text) = run(
        "python3",
        &[script.to_str().unwrap()],
        gen.path(),
        &[
            ("PYTHONPATH", gen.path().to_str().unwrap()),
            ("HPCSERA_URL", &env.url),
            ("HPCSERA_TOKEN", &env.token),
            ("HPCSERA_SITE", SITE),
        ],
        Duration::from_secs(180),
    )
    .await;
    assert!(ok, "the generated client's flow failed:\n{text}");
    assert!(text.contains("flow done"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_generator_validates_the_spec() {
    let spec = repo().join("openapi.json");
    let (ok, text) = run(
        "openapi-generator-cli",
        &["validate", "-i", spec.to_str().unwrap()],
        &repo(),
        &[],
        Duration::from_secs(180),
    )
    .await;
    assert!(ok, "openapi-generator refused the spec:\n{text}");
    assert!(text.contains("No validation issues detected"), "{text}");
}

/// schemathesis's every check and every phase with `token`: the examples, coverage and
/// fuzzing phases for `seconds[0]`, then the stateful phase for `seconds[1]` (a run of all
/// phases under one `--max-time` may spend it all before the stateful phase starts); its
/// configuration and hooks are in `clients/spec-checks`.
async fn fuzz(env: &Env, token: &str, seconds: [u64; 2]) {
    fuzz_phases(env, token, "examples,coverage,fuzzing", seconds[0]).await;
    // One worker: two state machines would delete each other's jobs, which the other then
    // counts as a lost resource.
    let text = fuzz_phases(env, token, "stateful", seconds[1]).await;
    assert!(
        text.contains("✅ Stateful"),
        "the stateful phase ran:\n{text}"
    );
}

async fn fuzz_phases(env: &Env, token: &str, phases: &str, seconds: u64) -> String {
    let checks = repo().join("clients/spec-checks");
    let report = tempfile::tempdir().unwrap();
    let spec = format!("{}/api/v1/openapi.json", env.url);
    let header = format!("Authorization: Bearer {token}");
    let max_time = seconds.to_string();
    let seed = fuzz_seed();
    let config = checks.join("schemathesis.toml");
    let mut args = vec![
        "--config-file",
        config.to_str().unwrap(),
        "run",
        spec.as_str(),
        "--url",
        &env.url,
        "-H",
        &header,
        "--phases",
        phases,
        "--workers",
        if phases == "stateful" { "1" } else { "2" },
        "--max-time",
        &max_time,
        "--report-dir",
        report.path().to_str().unwrap(),
    ];
    if let Some(seed) = &seed {
        args.extend(["--seed", seed.as_str()]);
    }
    let (ok, text) = run(
        "schemathesis",
        &args,
        // Run in the report's directory: schemathesis keeps a cache where it runs.
        report.path(),
        &[
            ("SCHEMATHESIS_HOOKS", "hooks"),
            ("PYTHONPATH", checks.to_str().unwrap()),
            ("PYTHONDONTWRITEBYTECODE", "1"),
            ("HPCSERA_SITE", SITE),
        ],
        Duration::from_secs(seconds + 120),
    )
    .await;
    let seed = seed.as_deref().unwrap_or("random");
    assert!(
        ok,
        "schemathesis found failures ({phases}, seed {seed}; HPCSERA_FUZZ_SEED=random explores \
         new inputs):\n{text}"
    );
    text
}

/// The fuzzer's seed: fixed, so that CI asks the same questions of the same code and a
/// failure is one a rerun reproduces (`st replay` and the seed in the message); set
/// `HPCSERA_FUZZ_SEED` to another number, or to `random` to explore new inputs (do that
/// before landing an API change: three random runs found nothing on 2026-12-06).
fn fuzz_seed() -> Option<String> {
    match std::env::var("HPCSERA_FUZZ_SEED") {
        Ok(s) if s == "random" => None,
        Ok(s) if !s.is_empty() => Some(s),
        _ => Some("20261206".into()),
    }
}

/// A server for the fuzzer: its requests without a token are answered 401, never 429 (the
/// limit of failed authentications per address would otherwise stop them).
async fn fuzzed_env() -> Env {
    let opts = Opts {
        auth_failures_per_minute: 0,
        ..Opts::default()
    };
    Env::with_opts(SITE, &job_types(), opts).await
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_with_an_all_roles_token() {
    let env = fuzzed_env().await;
    fuzz(&env, &env.token.clone(), [60, 40]).await;
    env.cancel_unfinished_jobs().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_with_an_agent_token() {
    let env = fuzzed_env().await;
    fuzz(&env, &agent_token(&env), [30, 20]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn python_sdk_passes_its_tests() {
    let env = Env::new(SITE, &job_types()).await;
    env.store
        .create_user(PERSON.0, Some(PERSON.1), false)
        .await
        .unwrap();
    env.store.add_member(PERSON.0, "p").await.unwrap();
    let target = tempfile::tempdir().unwrap();
    let sdk = repo().join("clients/python");
    // `pip install ./clients/python`, into a directory of its own; hatchling is installed
    // already (no download at test time).
    let (ok, text) = run(
        "python3",
        &[
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            target.path().to_str().unwrap(),
            sdk.to_str().unwrap(),
        ],
        &repo(),
        &[],
        Duration::from_secs(120),
    )
    .await;
    assert!(ok, "pip install ./clients/python failed:\n{text}");
    let cli = bin();
    let (ok, text) = run(
        "python3",
        &["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        &sdk,
        &[
            ("PYTHONPATH", target.path().to_str().unwrap()),
            ("PYTHONDONTWRITEBYTECODE", "1"),
            ("HPCSERA_URL", &env.url),
            ("HPCSERA_TOKEN", &env.token),
            ("HPCSERA_SITE", SITE),
            ("HPCSERA_TEST_CLI", cli.to_str().unwrap()),
            (
                "HPCSERA_TEST_REQUIRE_INSTALLED",
                target.path().to_str().unwrap(),
            ),
            ("HPCSERA_TEST_PERSON", PERSON.0),
            ("HPCSERA_TEST_PASSWORD", PERSON.1),
        ],
        Duration::from_secs(240),
    )
    .await;
    assert!(ok, "the Python SDK's tests failed:\n{text}");
    assert!(text.contains("passed"), "{text}");
    env.cancel_unfinished_jobs().await;
}

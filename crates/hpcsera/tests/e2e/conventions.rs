//! The CLI's conventions: shell completions and man pages from the CLI definition, `--output
//! json` on every command that prints data (`code` and `admin` included) before or after the
//! subcommand, YAML and JSON parameter files, and `--profile` before the subcommand.

use crate::common::{bin, fresh};
use crate::test_server::serve;
use hpcsera_api_types::{JobTypeSpec, PublishJobTypes};
use hpcsera_store::Store;
use serde_json::{json, Value};
use std::path::Path;

/// The binary with `env` (and nothing of the test's own HPCSERA_* settings); (exit code,
/// stdout, stderr).
async fn run(args: &[&str], env: &[(&str, String)]) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("HPCSERA_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .unwrap();
    crate::common::outcome(out)
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[tokio::test]
async fn completions_and_man_pages_come_from_the_cli_definition() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = run(&["completions", shell], &[]).await;
        assert_eq!(code, 0, "{shell}: {err}");
        for word in ["hpcsera", "submit", "params-file", "ca-file"] {
            assert!(out.contains(word), "{shell} completions lack {word}");
        }
        let script = dir.path().join(format!("hpcsera.{shell}"));
        std::fs::write(&script, &out).unwrap();
        if shell == "bash" {
            let ok = std::process::Command::new("bash")
                .arg("-n")
                .arg(&script)
                .status()
                .unwrap();
            assert!(ok.success(), "the bash script does not parse");
        }
    }
    let (code, _, err) = run(&["completions", "tcsh-9"], &[]).await;
    assert_eq!(code, 2, "{err}");

    let man = dir.path().join("man1");
    let (code, _, err) = run(&["man", man.to_str().unwrap()], &[]).await;
    assert_eq!(code, 0, "{err}");
    for page in [
        "hpcsera.1",
        "hpcsera-job-submit.1",
        "hpcsera-admin-token-create.1",
        "hpcsera-server.1",
    ] {
        let text =
            std::fs::read_to_string(man.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page} is not roff"
        );
    }
    let submit = std::fs::read_to_string(man.join("hpcsera-job-submit.1")).unwrap();
    assert!(submit.contains("params\\-file") && submit.contains("idempotency\\-key"));
    let server = std::fs::read_to_string(man.join("hpcsera-server.1")).unwrap();
    assert!(server.contains("tls\\-cert") && server.contains("trusted\\-proxy"));
}

/// A server with a published job type `sim` at `site1`; (url, client token, db url, dir).
async fn server() -> (String, String, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh::fresh_database(dir.path()).await;
    let store = Store::connect(&db).await.unwrap();
    let (tok, agent) = crate::common::alice_in_p(&store, "site1", "cli").await;
    let config = hpcsera_server::ServerConfig {
        code_dir: dir.path().join("code"),
        ..Default::default()
    };
    let url = serve(config, store).await;
    let spec: JobTypeSpec = serde_json::from_value(json!({
        "name": "sim",
        "parameters": [
            {"name": "steps", "type": "integer", "minimum": 1, "maximum": 1000},
            {"name": "label", "type": "string", "maxLength": 50},
            {"name": "fast", "type": "boolean", "default": false}
        ],
        "subJobs": [{"name": "run", "kind": "batch"}]
    }))
    .unwrap();
    hpcsera_client::Client::new(&url, &agent)
        .unwrap()
        .publish_job_types(
            "site1",
            &PublishJobTypes {
                agent_version: None,
                agent_host: None,
                agent_key: None,
                job_types: vec![spec],
            },
        )
        .await
        .unwrap();
    (url, tok, db, dir)
}

#[tokio::test]
async fn json_output_before_or_after_the_subcommand_on_code_and_admin() {
    let (url, tok, db, dir) = server().await;
    let client = vec![("HPCSERA_URL", url.clone()), ("HPCSERA_TOKEN", tok.clone())];
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("run.sh"), "echo hi\n").unwrap();
    let tree = tree.to_str().unwrap();

    let (code, out, err) = run(&["code", "push", tree, "--output", "json"], &client).await;
    assert_eq!(code, 0, "{err}");
    let id = json_of(&out)["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 64);
    let (code, out, err) = run(&["--output", "json", "code", "status", &id], &client).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_of(&out)["status"], "pending_approval");
    let mut env_json = client.clone();
    env_json.push(("HPCSERA_OUTPUT", "json".into()));
    let (code, out, err) = run(&["code", "list"], &env_json).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_of(&out)["bundles"][0]["id"], id.as_str());
    // Tables stay the default.
    let (_, out, _) = run(&["code", "list"], &client).await;
    assert!(out.starts_with(&id), "{out}");

    let admin = vec![
        ("HPCSERA_DATABASE_URL", db.clone()),
        (
            "HPCSERA_CODE_DIR",
            dir.path().join("code").display().to_string(),
        ),
    ];
    let cases: [(&[&str], &str); 7] = [
        (&["--output", "json", "admin", "user", "list"], "users"),
        (
            &["admin", "project", "list", "--output", "json"],
            "projects",
        ),
        (&["admin", "--output", "json", "token", "list"], "tokens"),
        (&["admin", "site", "list", "--output", "json"], "sites"),
        (
            &[
                "admin",
                "code",
                "list",
                "--project",
                "p",
                "--output",
                "json",
            ],
            "bundles",
        ),
        (
            &["admin", "user", "key", "list", "alice", "--output", "json"],
            "keys",
        ),
        (
            &[
                "admin",
                "prune",
                "--jobs-older-than",
                "30d",
                "--output",
                "json",
            ],
            "jobsDeleted",
        ),
    ];
    for (args, key) in cases {
        let (code, out, err) = run(args, &admin).await;
        assert_eq!(code, 0, "{args:?}: {err}");
        let v = json_of(&out);
        assert!(!v[key].is_null(), "{args:?}: {out}");
    }
    let (_, out, _) = run(&["admin", "user", "list", "--output", "json"], &admin).await;
    assert_eq!(json_of(&out)["users"][0]["name"], "alice");
    let (_, out, _) = run(&["admin", "token", "list", "--output", "json"], &admin).await;
    let tokens = json_of(&out);
    assert_eq!(tokens["tokens"].as_array().unwrap().len(), 2);
    assert!(!out.contains(&tok), "never a secret in a listing");
    let (code, out, err) = run(
        &[
            "--output",
            "json",
            "admin",
            "token",
            "create",
            "--user",
            "alice",
            "--project",
            "p",
            "--roles",
            "GET_JobStatus",
        ],
        &admin,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let made = json_of(&out);
    assert!(
        made["secret"].as_str().unwrap().starts_with("hpcs_"),
        "{out}"
    );
    assert_eq!(made["roles"], json!(["GET_JobStatus"]));
}

#[tokio::test]
async fn yaml_and_json_parameter_files_and_profiles_before_the_subcommand() {
    let (url, tok, _db, dir) = server().await;
    let yaml = dir.path().join("params.yaml");
    std::fs::write(
        &yaml,
        "# a study\nsteps: 12\nlabel: \"from yaml\"\nfast: yes_is_a_string_in_yaml_1_2\n",
    )
    .unwrap();
    let good_yaml = dir.path().join("good.yml");
    std::fs::write(&good_yaml, "steps: 12\nlabel: from yaml\nfast: true\n").unwrap();
    let json_file = dir.path().join("params.json");
    std::fs::write(&json_file, r#"{"steps": 7, "label": "from json"}"#).unwrap();
    let client = vec![("HPCSERA_URL", url.clone()), ("HPCSERA_TOKEN", tok.clone())];
    let submit = |extra: Vec<String>| {
        let mut args: Vec<String> = ["--output", "json", "job", "submit", "site1", "sim"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra);
        args
    };
    let p = |path: &Path| path.to_str().unwrap().to_string();

    let args = submit(vec!["-p".into(), format!("@{}", p(&good_yaml))]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = run(&args, &client).await;
    assert_eq!(code, 0, "{err}");
    let params = &json_of(&out)["parameters"];
    assert_eq!(
        params["steps"], 12,
        "a YAML number stays a number: {params}"
    );
    assert_eq!(params["label"], "from yaml");
    assert_eq!(params["fast"], true);

    // A file, then -p values over it; the JSON file by its extension.
    let args = submit(vec![
        "--params-file".into(),
        p(&json_file),
        "-p".into(),
        "steps=9".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = run(&args, &client).await;
    assert_eq!(code, 0, "{err}");
    let params = &json_of(&out)["parameters"];
    assert_eq!(
        (params["steps"].clone(), params["label"].clone()),
        (json!(9), json!("from json"))
    );

    // A value of the wrong type is the server's 422, naming the parameter.
    let args = submit(vec!["--params-file".into(), p(&yaml)]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, err) = run(&args, &client).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("fast"), "{err}");
    // Not a mapping, not YAML: usage errors naming the file.
    let list = dir.path().join("list.yaml");
    std::fs::write(&list, "- 1\n- 2\n").unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "steps: [1,\n").unwrap();
    for (file, what) in [(&list, "mapping"), (&broken, "not valid YAML")] {
        let args = submit(vec!["-p".into(), format!("@{}", p(file))]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, _, err) = run(&args, &client).await;
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains(what) && err.contains(file.file_name().unwrap().to_str().unwrap()),
            "{err}"
        );
    }

    // Profiles: --profile before or after the subcommand.
    let config = dir.path().join("config");
    std::fs::create_dir_all(config.join("hpcsera")).unwrap();
    let file = config.join("hpcsera/config.toml");
    std::fs::write(
        &file,
        format!("[profiles.\"other\"]\nurl = {url:?}\ntoken = {tok:?}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let env = vec![("XDG_CONFIG_HOME", p(&config))];
    for args in [
        &["--profile", "other", "whoami", "--output", "json"][..],
        &["whoami", "--profile", "other", "--output", "json"][..],
    ] {
        let (code, out, err) = run(args, &env).await;
        assert_eq!(code, 0, "{args:?}: {err}");
        assert_eq!(json_of(&out)["user"], "alice");
    }
    let (code, _, err) = run(&["--profile", "nope", "whoami"], &env).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no profile \"nope\""), "{err}");
    let (code, _, _) = run(&["whoami"], &env).await;
    assert_eq!(code, 2, "the default profile does not exist here");
}

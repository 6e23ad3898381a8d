//! The config file: a good example loads; bad ones are refused with file:line:col and key.

use hpcsera_agent::config::{read_token, AgentConfig, ConfigError, LoginCommand};
use hpcsera_agent::BatchPreset;
use hpcsera_api_types::SubJobKind;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const EXAMPLE: &str = include_str!("../../examples/agent.toml");

fn problems(src: &str) -> Vec<String> {
    match AgentConfig::parse("agent.toml", src) {
        Ok(_) => panic!("config should be refused:\n{src}"),
        Err(e) => {
            let text = e.to_string();
            assert_eq!(text.lines().count(), e.problems().len(), "{text}");
            e.problems().iter().map(ToString::to_string).collect()
        }
    }
}

fn base() -> String {
    r#"server_url = "https://h.example"
token_file = "/t"
site = "s1"
work_dir = "/w"
"#
    .to_string()
}

#[test]
fn example_config_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, EXAMPLE).unwrap();
    let cfg = AgentConfig::load(&path).unwrap();
    assert_eq!(cfg.site, "example-hpc");
    assert_eq!(cfg.batch.preset, BatchPreset::Slurm);
    assert_eq!(cfg.batch.submit_options, ["--account=proj42"]);
    assert_eq!(cfg.poll.long_poll_seconds, 30);
    assert_eq!(cfg.limits.max_active_jobs, 100);
    let jt = cfg.job_type("simulate").unwrap();
    let spec = jt.spec();
    spec.check().unwrap();
    assert_eq!(spec.parameters.len(), 3);
    let kinds: Vec<_> = spec
        .sub_jobs
        .iter()
        .map(|s| (s.name.as_str(), s.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("stage", SubJobKind::Login),
            ("run", SubJobKind::Batch),
            ("collect", SubJobKind::Login)
        ]
    );
    // The published spec is the api-types JSON shape and carries no commands.
    let json = serde_json::to_string(&spec).unwrap();
    assert!(
        !json.contains("HPCSERA_PARAM") && !json.contains("mkdir"),
        "{json}"
    );
    assert!(json.contains("\"maxLength\":64"), "{json}");
    assert_eq!(
        jt.sub_job("stage").unwrap().login_command(),
        Some(LoginCommand::Argv(vec![
            "/usr/bin/mkdir".into(),
            "-p".into(),
            "input".into()
        ]))
    );
    assert_eq!(
        jt.sub_job("collect").unwrap().login_command(),
        Some(LoginCommand::Shell("ls -l > listing.txt".into()))
    );
    assert_eq!(jt.sub_job("stage").unwrap().timeout_seconds, 60);
    // The agent validates parameters itself, defaults filled in.
    let p = jt
        .validate_parameters(serde_json::json!({"label": "a1"}).as_object().unwrap())
        .unwrap();
    assert_eq!(p["steps"], 100);
    assert!(jt
        .validate_parameters(serde_json::json!({"label": "a b"}).as_object().unwrap())
        .is_err());
    // Resource rules are published canonical (bytes, seconds); the agent applies them too.
    let rules = serde_json::to_value(&spec.resources).unwrap();
    assert_eq!(
        rules["duration"],
        serde_json::json!({"maximum": 7200, "default": 600})
    );
    assert_eq!(rules["memory"], serde_json::json!({"maximum": 64u64 << 30}));
    let r: hpcsera_api_types::Resources =
        serde_json::from_value(serde_json::json!({"node_count": 2})).unwrap();
    let r = jt.validate_resources(&r).unwrap();
    assert_eq!((r.node_count, r.duration), (Some(2), Some(600)));
    let too_many: hpcsera_api_types::Resources =
        serde_json::from_value(serde_json::json!({"node_count": 5})).unwrap();
    assert!(jt.validate_resources(&too_many).is_err());
}

#[test]
fn resource_rules_and_templates_are_checked_with_line_and_key() {
    let job = "\n[[job_types]]\nname = \"t\"\n[[job_types.sub_jobs]]\nname = \"run\"\nkind = \"batch\"\nscript = \"true\"\n";
    // A rule that makes no sense: located at its table, named by key.
    let p = problems(&format!(
        "{}{job}[job_types.resources]\nnode_count = {{ minimum = 4, maximum = 2 }}\naccount = {{ fixed = \"a b\" }}\n",
        base()
    ));
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].starts_with("agent.toml:12:"), "{p:?}");
    assert!(
        p[0].contains(": job_types[0].resources.node_count.minimum: "),
        "{p:?}"
    );
    assert!(
        p[1].contains(": job_types[0].resources.account.fixed: "),
        "{p:?}"
    );
    // An unknown resource, an unknown key of a rule.
    for bad in ["walltime = {}", "node_count = { max = 2 }"] {
        let p = problems(&format!("{}{job}[job_types.resources]\n{bad}\n", base()));
        assert!(p[0].starts_with("agent.toml:1"), "{p:?}");
    }
    // A sub-job's own resources are parsed like a client's, and only batch sub-jobs have them.
    let p = problems(&format!(
        "{}\n[[job_types]]\nname = \"t\"\n[[job_types.sub_jobs]]\nname = \"s\"\nkind = \"batch\"\nscript = \"true\"\nresources = {{ duration = \"soon\" }}\n",
        base()
    ));
    assert!(p[0].contains("not a duration"), "{p:?}");
    let p = problems(&format!(
        "{}\n[[job_types]]\nname = \"t\"\n[[job_types.sub_jobs]]\nname = \"s\"\nkind = \"login\"\ncommand = [\"true\"]\nresources = {{ node_count = 1 }}\n",
        base()
    ));
    assert!(
        p[0].contains("job_types[0].sub_jobs[0].resources: only batch"),
        "{p:?}"
    );
    // [batch.resources] overrides name resources.
    let p = problems(&format!("{}\n[batch.resources]\ngpus = [\"-x\"]\n", base()));
    assert!(
        p[0].starts_with("agent.toml:7:") && p[0].contains("gpus"),
        "{p:?}"
    );
    let cfg = AgentConfig::parse(
        "a.toml",
        &format!(
            "{}\n[batch]\npreset = \"slurm\"\n[batch.resources]\ngpu_cores_per_process = [\"--gres=gpu:{{value}}\"]\n",
            base()
        ),
    )
    .unwrap();
    assert_eq!(cfg.batch.resources.len(), 1);
}

#[test]
fn defaults() {
    let cfg = AgentConfig::parse("a.toml", &base()).unwrap();
    assert_eq!(cfg.batch.preset, BatchPreset::Local);
    assert_eq!(cfg.poll.idle_interval_seconds, 5);
    assert_eq!(cfg.poll.status_interval_seconds, 10);
    assert!(cfg.job_types.is_empty());
}

#[test]
fn unknown_preset_names_line_and_key() {
    let src = format!("{}\n[batch]\npreset = \"condor\"\n", base());
    let p = problems(&src);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("agent.toml:7:"), "{p:?}");
    assert!(p[0].contains(": batch.preset: "), "{p:?}");
    assert!(
        p[0].contains("condor") || p[0].contains("unknown variant"),
        "{p:?}"
    );
}

#[test]
fn unknown_key_and_missing_key() {
    let p = problems(&format!("{}\n[poll]\nlong_pol_seconds = 3\n", base()));
    assert!(
        p[0].starts_with("agent.toml:7:") && p[0].contains("long_pol_seconds"),
        "{p:?}"
    );
    let p = problems("server_url = \"https://x\"\nsite = \"s\"\nwork_dir = \"/w\"\n");
    assert!(p[0].contains("token_file"), "{p:?}");
}

#[test]
fn missing_script_is_located() {
    let src = format!(
        "{}\n[[job_types]]\nname = \"t\"\n\n[[job_types.sub_jobs]]\nname = \"run\"\nkind = \"batch\"\n",
        base()
    );
    let p = problems(&src);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("agent.toml:"), "{p:?}");
    assert!(p[0].contains("job_types[0].sub_jobs[0].script"), "{p:?}");
    // The line is the sub-job's (lines 9..11), not 0.
    let line: usize = p[0].split(':').nth(1).unwrap().parse().unwrap();
    assert!((9..=11).contains(&line), "{p:?}");
}

#[test]
fn login_needs_command_xor_shell() {
    let src = format!(
        "{}\n[[job_types]]\nname = \"t\"\n[[job_types.sub_jobs]]\nname = \"a\"\nkind = \"login\"\ncommand = [\"true\"]\nshell = \"true\"\n[[job_types.sub_jobs]]\nname = \"b\"\nkind = \"login\"\n",
        base()
    );
    let p = problems(&src);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].contains("job_types[0].sub_jobs[0].command") && p[0].contains("not both"));
    assert!(p[1].contains("job_types[0].sub_jobs[1].command"));
}

#[test]
fn duplicate_names() {
    let sub = "[[job_types.sub_jobs]]\nname = \"a\"\nkind = \"login\"\ncommand = [\"true\"]\n";
    let src = format!(
        "{}\n[[job_types]]\nname = \"t\"\n{sub}{sub}[[job_types]]\nname = \"t\"\n{sub}",
        base()
    );
    let p = problems(&src);
    assert!(
        p.iter()
            .any(|x| x.contains("job_types[0].sub_jobs[1].name") && x.contains("duplicate")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|x| x.contains("job_types[1].name") && x.contains("duplicate job type")),
        "{p:?}"
    );
}

#[test]
fn bad_parameter_specs() {
    let sub = "[[job_types.sub_jobs]]\nname = \"a\"\nkind = \"login\"\ncommand = [\"true\"]\n";
    let src = format!(
        "{}\n[[job_types]]\nname = \"t\"\n\
         [[job_types.parameters]]\nname = \"n\"\ntype = \"integer\"\nminimum = 5\nmaximum = 1\n\
         [[job_types.parameters]]\nname = \"s\"\ntype = \"string\"\nmax_length = 3\n\
         [[job_types.parameters]]\nname = \"x\"\ntype = \"float\"\n\
         [[job_types.parameters]]\nname = \"bad-name\"\ntype = \"string\"\npattern = \"(\"\n\
         {sub}",
        base()
    );
    let p = problems(&src);
    let has = |key: &str, line: usize| {
        p.iter()
            .any(|x| x.contains(key) && x.starts_with(&format!("agent.toml:{line}:")))
    };
    // Each problem points at its `[[job_types.parameters]]` table.
    assert!(has("job_types[0].parameters[0].minimum", 8), "{p:#?}");
    assert!(has("job_types[0].parameters[1].max_length", 13), "{p:#?}");
    assert!(
        has("job_types[0].parameters[2]: not a valid parameter", 17),
        "{p:#?}"
    );
    assert!(has("job_types[0].parameters[3].name", 20), "{p:#?}");
    assert!(has("job_types[0].parameters[3].pattern", 20), "{p:#?}");
}

#[test]
fn bad_state_class_and_empty_command() {
    let src = format!(
        "{}\n[batch]\npreset = \"slurm\"\ncancel = []\nstates = {{ PREEMPTED = \"paused\" }}\n",
        base()
    );
    let p = problems(&src);
    assert!(p.iter().any(|x| x.contains("batch.cancel")), "{p:?}");
    assert!(
        p.iter().any(|x| x.contains("batch.states.PREEMPTED")),
        "{p:?}"
    );
}

#[test]
fn batch_script_must_be_shell() {
    let src = format!(
        "{}\n[[job_types]]\nname = \"t\"\n[[job_types.sub_jobs]]\nname = \"r\"\nkind = \"batch\"\nscript = \"#!/usr/bin/python3\\nprint(1)\\n\"\n",
        base()
    );
    let p = problems(&src);
    assert!(
        p[0].contains("job_types[0].sub_jobs[0].script") && p[0].contains("bash"),
        "{p:?}"
    );
}

#[test]
fn missing_file_is_named() {
    let e = AgentConfig::load("/nonexistent/agent.toml").unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(e.to_string().contains("/nonexistent/agent.toml"));
}

fn token_file(dir: &Path, mode: u32) -> std::path::PathBuf {
    let p = dir.join("token");
    std::fs::write(&p, "  hpcs_secret123\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

#[test]
fn token_file_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let p = token_file(dir.path(), 0o600);
    assert_eq!(read_token(&p).unwrap(), "hpcs_secret123");
    let p = token_file(dir.path(), 0o644);
    let e = read_token(&p).unwrap_err();
    assert!(
        matches!(e, ConfigError::TokenPermissions { mode: 0o644, .. }),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("0644") && msg.contains("chmod 600") && msg.contains("token"),
        "{msg}"
    );
    let p = token_file(dir.path(), 0o640);
    assert!(read_token(&p).is_err());
    let p = dir.path().join("empty");
    std::fs::write(&p, "\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(
        read_token(&p),
        Err(ConfigError::TokenEmpty { .. })
    ));
}

#[test]
fn approval_settings_load_and_requiring_signatures_needs_the_file_and_the_project() {
    let src = format!(
        "{}[approval]\nrequire_signature = true\nallowed_signers = \"/etc/hpcsera/allowed_signers\"\nproject = \"p-1\"\n",
        base()
    );
    let cfg = AgentConfig::parse("agent.toml", &src).unwrap();
    assert!(cfg.approval.require_signature);
    assert_eq!(
        cfg.approval.allowed_signers.as_deref(),
        Some(Path::new("/etc/hpcsera/allowed_signers"))
    );
    assert_eq!(cfg.approval.project.as_deref(), Some("p-1"));
    // Off by default.
    let cfg = AgentConfig::parse("agent.toml", &base()).unwrap();
    assert!(!cfg.approval.require_signature);
    let p = problems(&format!("{}[approval]\nrequire_signature = true\n", base()));
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].starts_with("agent.toml:5:1: approval.allowed_signers: require_signature needs"),
        "{p:?}"
    );
    assert!(
        p[1].contains("approval.project: require_signature needs the project"),
        "{p:?}"
    );
    let p = problems(&format!("{}[approval]\nproject = \"a b\"\n", base()));
    assert!(
        p[0].contains("approval.project: is not a valid project name"),
        "{p:?}"
    );
    let p = problems(&format!(
        "{}[approval]\nrequire_signatures = true\n",
        base()
    ));
    assert!(p[0].contains("require_signatures"), "{p:?}");
}

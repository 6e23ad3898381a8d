//! Micro-benchmarks of the hot paths: the token check (cached and from the database), the
//! parameter validation of a submission, the rendering of a batch script, and the parsing of
//! one status query's answer for 1,000 jobs.
//!
//! Run with `cargo bench -p hpcsera --bench hot_paths`. The HTTP-level figures are the
//! harness's (`scripts/bench.sh`, BENCHMARKS.md); these say where the time of one request goes.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use hpcsera_agent::batch::parse::parse_squeue;
use hpcsera_agent::script::render_text;
use hpcsera_api_types::{JobTypeSpec, RoleSet};
use hpcsera_store::{NewToken, Store};
use serde_json::{json, Map, Value};

fn token_check(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, secret) = rt.block_on(async {
        let url = format!("sqlite://{}", dir.path().join("b.db").display());
        let store = Store::connect(&url).await.expect("store");
        store.create_user("u", None, false).await.expect("user");
        store.create_project("p", "").await.expect("project");
        store.add_member("u", "p").await.expect("member");
        let (_, secret) = store
            .create_token(&NewToken {
                user: "u",
                project: "p",
                name: "bench",
                roles: RoleSet::all(),
                site: None,
                expires_at: None,
            })
            .await
            .expect("token");
        (store, secret)
    });
    let mut g = c.benchmark_group("token check");
    g.bench_function("SHA-256 of the secret", |b| {
        b.iter(|| hpcsera_store::hash_token(black_box(&secret)))
    });
    g.bench_function("authenticate, cached", |b| {
        b.iter(|| rt.block_on(store.authenticate(black_box(&secret))))
    });
    g.bench_function("authenticate, from SQLite (cache cleared)", |b| {
        b.iter(|| {
            store.auth_changed();
            rt.block_on(store.authenticate(black_box(&secret)))
        })
    });
    g.finish();
}

fn parameter_validation(c: &mut Criterion) {
    let spec: JobTypeSpec = serde_json::from_value(json!({
        "name": "sim",
        "parameters": [
            {"name": "label", "type": "string", "maxLength": 200},
            {"name": "steps", "type": "integer", "minimum": 1, "maximum": 1000, "default": 10},
            {"name": "tol", "type": "number", "minimum": 0.0, "maximum": 1.0, "required": false},
            {"name": "verbose", "type": "boolean", "default": false},
            {"name": "mode", "type": "enum", "values": ["fast", "exact"], "default": "fast"},
            {"name": "tag", "type": "string", "pattern": "[a-z][a-z0-9-]*", "required": false}
        ],
        "subJobs": [{"name": "run", "kind": "batch"}]
    }))
    .expect("spec");
    let given: Map<String, Value> = serde_json::from_value(
        json!({"label": "run 42", "steps": 500, "tol": 0.01, "tag": "sweep-7"}),
    )
    .expect("params");
    c.bench_function("validate 6 parameters (pattern, range, defaults)", |b| {
        b.iter(|| spec.validate_parameters(black_box(&given)))
    });
}

fn script_rendering(c: &mut Criterion) {
    let script = "#!/bin/bash\n#SBATCH --time=00:10:00\n#SBATCH --ntasks=4\n\nmodule load gcc\n\
                  srun ./simulate --steps \"$HPCSERA_PARAM_steps\" --label \"$HPCSERA_PARAM_label\"\n";
    c.bench_function("render a batch script (text)", |b| {
        b.iter(|| render_text(black_box(script)))
    });
}

fn status_parsing(c: &mut Criterion) {
    let out: String = (0..1000)
        .map(|i| {
            let state = ["RUNNING|None", "PENDING|Priority", "COMPLETED|None"][i % 3];
            format!("{}|{state}\n", 100_000 + i)
        })
        .collect();
    c.bench_function("parse squeue for 1,000 jobs", |b| {
        b.iter(|| parse_squeue(black_box(&out)))
    });
}

criterion_group!(
    benches,
    token_check,
    parameter_validation,
    script_rendering,
    status_parsing
);
criterion_main!(benches);

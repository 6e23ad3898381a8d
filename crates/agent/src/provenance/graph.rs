//! The entities of a manifest, gathered into a graph: the helpers that make `@id`s and
//! values, and one method per group of entities (see the table in [`super::manifest`]).
//!
//! A pure function of [`RunFacts`]: this module must never do I/O.

use super::manifest::{iso_time, ContainerFacts, RunFacts, PROFILE, WFRUN};
use crate::batch::probe::Probe;
use hpcsera_api_types::provenance::{job_action_id, CODE_PREFIX, RESULTS_PREFIX};
use hpcsera_api_types::{JobStatus, SignedApproval, SubJobKind, SubJobState};
use serde_json::{json, Value};

pub(super) fn id(s: impl Into<String>) -> Value {
    json!({ "@id": s.into() })
}

/// One value as itself, several as an array, none as `None` (RO-Crate's compacted form).
pub(super) fn one_or_many(mut v: Vec<Value>) -> Option<Value> {
    match v.len() {
        0 => None,
        1 => v.pop(),
        _ => Some(Value::Array(v)),
    }
}

/// Sets `key` when there is something to set.
fn put(e: &mut Value, key: &str, v: Option<Value>) {
    if let (Some(v), Some(obj)) = (v, e.as_object_mut()) {
        obj.insert(key.to_string(), v);
    }
}

/// An `@id` fragment from a name: unreserved characters kept, the rest percent-encoded.
pub(super) fn frag(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn person(name: &str) -> String {
    format!("#user-{}", frag(name))
}

/// A media type for a result file, by its extension.
fn media_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("txt" | "log" | "out") => "text/plain",
        Some("csv") => "text/csv",
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        Some("html" | "htm") => "text/html",
        Some("md") => "text/markdown",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("pdf") => "application/pdf",
        Some("gz" | "tgz") => "application/gzip",
        Some("tar") => "application/x-tar",
        Some("zip") => "application/zip",
        Some("nc") => "application/x-netcdf",
        Some("h5" | "hdf5") => "application/x-hdf5",
        _ => "application/octet-stream",
    }
}

/// The URI of a job type: where the server lists it.
fn job_type_uri(f: &RunFacts<'_>) -> String {
    format!(
        "{}/api/v1/sites/{}/jobTypes#{}",
        f.server_url.trim_end_matches('/'),
        frag(&f.job.site),
        frag(&f.job_type.name)
    )
}

fn action_status(status: JobStatus) -> &'static str {
    if status == JobStatus::Completed {
        "http://schema.org/CompletedActionStatus"
    } else {
        "http://schema.org/FailedActionStatus"
    }
}

/// A recorded command as a `PropertyValue`.
fn probe_value(at: &str, property: &str, p: &Probe) -> Value {
    let mut notes = Vec::new();
    match (p.exit_code, &p.error) {
        (_, Some(e)) => notes.push(format!("did not run to its end: {e}")),
        (Some(c), None) => notes.push(format!("exit code {c}")),
        (None, None) => notes.push("killed by a signal".to_string()),
    }
    if p.truncated {
        notes.push("output cut to the agent's bound".to_string());
    }
    json!({
        "@id": at,
        "@type": "PropertyValue",
        "propertyID": property,
        "name": p.command(),
        "value": p.output,
        "description": notes.join("; "),
    })
}

fn property(at: &str, name: &str, value: Value) -> Value {
    json!({ "@id": at, "@type": "PropertyValue", "name": name, "value": value })
}

/// The bytes of the manifest for `f` (pretty JSON, what the agent signs).
pub fn build(f: &RunFacts<'_>) -> Vec<u8> {
    let mut g = Graph {
        entities: Vec::new(),
        people: Default::default(),
        project: format!("#project-{}", frag(&f.job.project)),
    };
    let files = g.files(f);
    let (job_objects, code_parts) = g.inputs(f);
    let software = g.software(f);
    let mut mentions = vec![id(job_action_id(&f.job.id))];
    mentions.extend(g.sub_jobs(f, &software, &job_objects));
    mentions.extend(g.approvals(f));
    g.job_action(f, &software, job_objects, files.clone());
    g.root(f, files.into_iter().chain(code_parts).collect(), mentions);
    let doc = json!({
        "@context": [
            "https://w3id.org/ro/crate/1.1/context",
            {
                "sha256": "http://schema.org/sha256",
                "ContainerImage": format!("{WFRUN}ContainerImage"),
                "containerImage": format!("{WFRUN}containerImage"),
                "registry": format!("{WFRUN}registry"),
                "tag": format!("{WFRUN}tag"),
            }
        ],
        "@graph": g.entities,
    });
    serde_json::to_vec_pretty(&doc).unwrap_or_default()
}

/// The entities being gathered, in order; each person once, affiliated with `project`.
pub(super) struct Graph {
    pub(super) entities: Vec<Value>,
    people: std::collections::BTreeSet<String>,
    project: String,
}

/// The ids of the job type's and each sub-job's `SoftwareApplication`.
struct Software {
    job_type: String,
    sub_jobs: Vec<String>,
}

impl Graph {
    fn push(&mut self, e: Value) {
        self.entities.push(e);
    }

    /// A `Person` for a user name (once); its id.
    fn person(&mut self, name: &str) -> Value {
        let at = person(name);
        if self.people.insert(name.to_string()) {
            self.push(json!({ "@id": at, "@type": "Person", "name": name,
                "affiliation": id(self.project.clone()) }));
        }
        id(at)
    }

    /// The result files (and the job's exit code); their references for `result`.
    fn files(&mut self, f: &RunFacts<'_>) -> Vec<Value> {
        let mut refs = Vec::new();
        for r in &f.results {
            let at = format!("{RESULTS_PREFIX}{}", r.name);
            self.push(json!({
                "@id": at,
                "@type": "File",
                "name": r.name,
                "sha256": r.sha256,
                "contentSize": r.size.to_string(),
                "encodingFormat": media_type(&r.name),
                "dateCreated": r.created_at,
            }));
            refs.push(id(at));
        }
        refs
    }

    /// Parameters, resources and code bundles: the job's `object` references, and the code bundles'
    /// references for the root's `hasPart`.
    fn inputs(&mut self, f: &RunFacts<'_>) -> (Vec<Value>, Vec<Value>) {
        let mut objects = Vec::new();
        let mut parts = Vec::new();
        for c in &f.code {
            let b = &c.bundle;
            let at = format!("{CODE_PREFIX}{}", b.id);
            let author = self.person(&b.uploaded_by);
            self.push(json!({
                "@id": at,
                "@type": "File",
                "name": format!("code bundle of parameter {}", c.param),
                "description": format!("uploaded by {} at {}; the agent checked its SHA-256 before unpacking it",
                    b.uploaded_by, b.created_at),
                "sha256": b.id,
                "contentSize": b.size.to_string(),
                "encodingFormat": "application/gzip",
                "author": author,
                "dateCreated": b.created_at,
            }));
            objects.push(id(&at));
            parts.push(id(&at));
        }
        for (name, value) in f.params {
            let at = format!("#param-{}", frag(name));
            let value = match value {
                Value::Object(_) | Value::Array(_) => Value::String(value.to_string()),
                v => v.clone(),
            };
            let mut p = property(&at, name, value);
            put(&mut p, "propertyID", Some(json!("parameter")));
            self.push(p);
            objects.push(id(at));
        }
        for (name, value) in f.resources.iter() {
            let at = format!("#resource-{name}");
            let mut p = property(&at, name.as_str(), value.to_json());
            put(&mut p, "propertyID", Some(json!("resource")));
            self.push(p);
            objects.push(id(at));
        }
        (objects, parts)
    }

    /// The job type, its sub-jobs, the agent and the batch system as software.
    fn software(&mut self, f: &RunFacts<'_>) -> Software {
        let jt = job_type_uri(f);
        let version = format!("sha256:{}", f.job_type.definition_digest());
        let base = f.server_url.trim_end_matches('/');
        let agent_at = format!("{base}/api/v1/sites/{}#agent", frag(&f.job.site));
        self.push(json!({
            "@id": agent_at, "@type": "SoftwareApplication", "name": "hpcsera agent",
            "url": agent_at, "softwareVersion": f.agent.version,
        }));
        let (batch_at, batch_name) = batch_system(&f.agent.batch_system, &agent_at);
        let batch_version = f
            .agent
            .batch_version
            .as_ref()
            .and_then(|p| {
                p.output
                    .lines()
                    .next()
                    .map(|l| l.trim().chars().take(200).collect::<String>())
            })
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "unknown".into());
        self.push(json!({
            "@id": batch_at, "@type": "SoftwareApplication", "name": batch_name,
            "url": batch_at, "softwareVersion": batch_version,
        }));
        let mut subs = Vec::new();
        for s in &f.job_type.sub_jobs {
            let at = format!("{jt}/{}", frag(&s.name));
            self.push(json!({
                "@id": at, "@type": "SoftwareApplication",
                "name": format!("{} / {} ({} sub-job)", f.job_type.name, s.name, kind_name(s.kind)),
                "url": jt, "softwareVersion": version, "isPartOf": id(&jt),
            }));
            subs.push(at);
        }
        self.push(json!({
            "@id": jt, "@type": "SoftwareApplication", "name": f.job_type.name,
            "description": format!("{} — job type of site {} defined in the agent's config; softwareVersion is the SHA-256 of its definition",
                f.job_type.description, f.job.site),
            "url": jt, "softwareVersion": version,
            "softwareRequirements": [id(&agent_at), id(&batch_at)],
        }));
        Software {
            job_type: jt,
            sub_jobs: subs,
        }
    }

    /// A `CreateAction` for each sub-job that started; their references for `mentions`.
    fn sub_jobs(&mut self, f: &RunFacts<'_>, sw: &Software, objects: &[Value]) -> Vec<Value> {
        let mut refs = Vec::new();
        let submitter = self.person(&f.job.owner);
        for (i, s) in f.sub_jobs.iter().enumerate() {
            if s.state.status == hpcsera_api_types::SubJobStatus::Pending {
                continue;
            }
            let name = &s.state.name;
            let at = format!("#subjob-{}", frag(name));
            let outcome_at = format!("#outcome-{}", frag(name));
            self.push(match s.state.exit_code {
                Some(c) => property(&outcome_at, "exit code", json!(c)),
                None => property(&outcome_at, "outcome", json!(s.state.status.as_str())),
            });
            let mut a = json!({
                "@id": at, "@type": "CreateAction",
                "name": format!("sub-job {name} of job {}", f.job.id),
                "description": format!("{} sub-job {name}: {}", kind_name(s.kind),
                    s.state.message.as_deref().unwrap_or(s.state.status.as_str())),
                "instrument": id(sw.sub_jobs.get(i).cloned().unwrap_or_else(|| sw.job_type.clone())),
                "agent": submitter.clone(),
                "result": id(outcome_at),
                "actionStatus": sub_status(s.state),
            });
            put(&mut a, "object", one_or_many(objects.to_vec()));
            put(
                &mut a,
                "startTime",
                s.started_ms.map(|t| json!(iso_time(t))),
            );
            put(&mut a, "endTime", s.ended_ms.map(|t| json!(iso_time(t))));
            if sub_status(s.state).ends_with("FailedActionStatus") {
                put(
                    &mut a,
                    "error",
                    Some(json!(s.state.message.clone().unwrap_or_else(|| s
                        .state
                        .status
                        .as_str()
                        .into()))),
                );
            }
            if let Some(b) = &s.state.batch_job_id {
                let bat = format!("#batchjob-{}", frag(name));
                let mut p = property(&bat, "batch job id", json!(b));
                put(
                    &mut p,
                    "propertyID",
                    Some(json!(format!("{} job id", f.agent.batch_system))),
                );
                self.push(p);
                put(&mut a, "identifier", Some(id(bat)));
            }
            let mut extra = Vec::new();
            for (what, p) in [("batch-report", &s.report), ("module-list", &s.modules)] {
                if let Some(p) = p {
                    let pat = format!("#{what}-{}", frag(name));
                    self.push(probe_value(&pat, what, p));
                    extra.push(id(pat));
                }
            }
            put(&mut a, "additionalProperty", one_or_many(extra));
            self.push(a);
            refs.push(id(at));
        }
        refs
    }

    /// A signed approval's message, SSH signature and key fingerprint as properties of the
    /// approval `at` (so that a reader can check it with `ssh-keygen -Y verify`); their refs.
    fn signed(&mut self, at: &str, signed: &SignedApproval) -> Value {
        let mut refs = Vec::new();
        let fingerprint = signed.key_fingerprint.as_deref().unwrap_or_default();
        for (what, name, value) in [
            (
                "message",
                "signed approval message",
                signed.message.as_str(),
            ),
            (
                "signature",
                "SSH signature (SSHSIG, namespace hpcsera-code)",
                &signed.signature,
            ),
            ("key", "signing key fingerprint", fingerprint),
        ] {
            if value.is_empty() {
                continue;
            }
            let pat = format!("{at}-{what}");
            self.push(property(&pat, name, json!(value)));
            refs.push(id(pat));
        }
        Value::Array(refs)
    }

    /// An `AuthorizeAction` for each decided code bundle; their references for `mentions`.
    fn approvals(&mut self, f: &RunFacts<'_>) -> Vec<Value> {
        let mut refs = Vec::new();
        for c in &f.code {
            let b = &c.bundle;
            let Some(by) = &b.decided_by else { continue };
            let approver = self.person(by);
            let at = format!("#approval-{}", b.id);
            let mut a = json!({
                "@id": at, "@type": "AuthorizeAction",
                "name": format!("approval of code bundle {}", b.id),
                "description": format!("{} decided {} for exactly this SHA-256", by, b.status),
                "agent": approver,
                "object": id(format!("{CODE_PREFIX}{}", b.id)),
            });
            put(&mut a, "endTime", b.decided_at.clone().map(Value::String));
            if let Some(signed) = &b.approval {
                put(&mut a, "additionalProperty", Some(self.signed(&at, signed)));
            }
            self.push(a);
            refs.push(id(at));
        }
        refs
    }

    /// The job's own `CreateAction`.
    fn job_action(
        &mut self,
        f: &RunFacts<'_>,
        sw: &Software,
        objects: Vec<Value>,
        files: Vec<Value>,
    ) {
        let e = &f.end;
        let mut results = files;
        if let Some(c) = e.exit_code {
            self.push(property("#exit", "exit code", json!(c)));
            results.push(id("#exit"));
        } else {
            self.push(property("#exit", "outcome", json!(e.status.as_str())));
            results.push(id("#exit"));
        }
        let mut extra = vec![id("#status"), id("#host")];
        self.push(property(
            "#status",
            "hpcsera job status",
            json!(e.status.as_str()),
        ));
        self.push(property("#host", "agent host", json!(f.agent.host)));
        // A sweep's member names its sweep and its index in it.
        if let Some((sweep, index)) = hpcsera_api_types::sweep::member_of(f.job) {
            self.push(property("#sweep", "hpcsera sweep", json!(sweep)));
            self.push(property(
                "#sweep-index",
                "hpcsera sweep index",
                json!(index),
            ));
            extra.push(id("#sweep"));
            extra.push(id("#sweep-index"));
        }
        if let Some(p) = &f.agent.batch_version {
            self.push(probe_value("#batch-version", "batch-version", p));
            extra.push(id("#batch-version"));
        }
        for (name, p) in &f.commands {
            let at = format!("#command-{}", frag(name));
            self.push(probe_value(&at, &format!("command:{name}"), p));
            extra.push(id(at));
        }
        let submitter = self.person(&f.job.owner);
        let mut a = json!({
            "@id": job_action_id(&f.job.id), "@type": "CreateAction",
            "name": format!("hpcsera job {}", f.job.id),
            "description": format!("job type {} at site {}: {}. {}", f.job_type.name, f.job.site, e.status, e.message),
            "instrument": id(&sw.job_type),
            "agent": submitter,
            "startTime": iso_time(e.started_ms),
            "endTime": iso_time(e.ended_ms),
            "actionStatus": action_status(e.status),
        });
        put(&mut a, "object", one_or_many(objects));
        put(&mut a, "result", one_or_many(results));
        if e.status != JobStatus::Completed {
            put(&mut a, "error", Some(json!(e.message)));
        }
        if let Some(c) = &f.container {
            self.push(container(c));
            put(&mut a, "containerImage", Some(id("#container")));
        }
        put(&mut a, "additionalProperty", one_or_many(extra));
        self.push(a);
    }

    /// The descriptor, the root data entity and the profile and licence entities, first.
    fn root(&mut self, f: &RunFacts<'_>, parts: Vec<Value>, mentions: Vec<Value>) {
        let author = self.person(&f.job.owner);
        let site_at = format!("#site-{}", frag(&f.job.site));
        let base = f.server_url.trim_end_matches('/');
        let mut root = json!({
            "@id": "./", "@type": "Dataset",
            "identifier": f.job.id,
            "name": format!("Provenance of hpcsera job {}", f.job.id),
            "description": format!("What ran for job {} (job type {} at site {}), with which code, parameters and software, and the SHA-256 of every result; signed by the site's agent.",
                f.job.id, f.job_type.name, f.job.site),
            "datePublished": iso_time(f.end.ended_ms),
            "license": id("#license"),
            "author": author,
            "publisher": id(&site_at),
            "conformsTo": id(PROFILE),
        });
        put(&mut root, "hasPart", one_or_many(parts));
        put(&mut root, "mentions", one_or_many(mentions));
        let head = vec![
            json!({
                "@id": "ro-crate-metadata.json", "@type": "CreativeWork",
                "conformsTo": id("https://w3id.org/ro/crate/1.1"), "about": id("./"),
            }),
            root,
            json!({ "@id": PROFILE, "@type": "CreativeWork", "name": "Process Run Crate", "version": "0.5" }),
            json!({ "@id": "#license", "@type": "CreativeWork", "name": "No licence stated",
                "description": "The job's results belong to its project; ask the project for terms of use." }),
            json!({ "@id": site_at, "@type": "Organization", "name": format!("HPC site {}", f.job.site),
                "url": format!("{base}/api/v1/sites/{}/jobTypes", frag(&f.job.site)) }),
            json!({ "@id": self.project, "@type": "Organization",
                "name": format!("hpcsera project {}", f.job.project), "url": format!("{base}/") }),
        ];
        self.entities.splice(0..0, head);
    }
}

fn kind_name(k: SubJobKind) -> &'static str {
    match k {
        SubJobKind::Login => "login",
        SubJobKind::Batch => "batch",
    }
}

fn sub_status(s: &SubJobState) -> &'static str {
    if s.status == hpcsera_api_types::SubJobStatus::Completed {
        "http://schema.org/CompletedActionStatus"
    } else {
        "http://schema.org/FailedActionStatus"
    }
}

/// The batch system's `@id` (its home page, or the site's agent for the local adapter) and
/// name.
fn batch_system(adapter: &str, agent_at: &str) -> (String, String) {
    match adapter {
        "slurm" => ("https://slurm.schedmd.com/".into(), "Slurm".into()),
        "pbs" => ("https://www.openpbs.org/".into(), "PBS".into()),
        "lsf" => (
            "https://www.ibm.com/products/hpc-workload-management".into(),
            "IBM Spectrum LSF".into(),
        ),
        other => (
            format!("{agent_at}-{}", frag(other)),
            format!("hpcsera {other} batch adapter"),
        ),
    }
}

/// A `ContainerImage` (workflow-run terms) from a reference like
/// `docker://registry/name:tag`, or a file path (a SIF image).
fn container(c: &ContainerFacts) -> Value {
    let (kind, rest) = match c.image.split_once("://") {
        Some(("docker", r)) => ("DockerImage", r),
        Some((_, r)) => ("SIFImage", r),
        None if c.image.ends_with(".sif") => ("SIFImage", c.image.as_str()),
        None => ("DockerImage", c.image.as_str()),
    };
    let (registry, path) = match rest.split_once('/') {
        Some((r, p)) if r.contains('.') || r.contains(':') => (r.to_string(), p.to_string()),
        _ if kind == "DockerImage" => ("docker.io".to_string(), rest.to_string()),
        _ => ("local file".to_string(), rest.to_string()),
    };
    let (name, tag) = match path.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n.to_string(), Some(t.to_string())),
        _ => (path.clone(), None),
    };
    let mut e = json!({
        "@id": "#container", "@type": "ContainerImage",
        "additionalType": id(format!("{WFRUN}{kind}")),
        "name": name, "registry": registry,
        "description": format!("the image as the job type names it: {}", c.image),
    });
    put(&mut e, "tag", tag.map(Value::String));
    put(
        &mut e,
        "sha256",
        c.digest
            .as_ref()
            .map(|d| json!(d.trim_start_matches("sha256:"))),
    );
    e
}

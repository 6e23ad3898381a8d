use super::units::*;
use super::*;
use serde_json::json;

fn map(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn rules(v: Value) -> ResourceRules {
    serde_json::from_value(v).unwrap()
}

fn sim_rules() -> ResourceRules {
    rules(json!({
        "node_count": {"minimum": 1, "maximum": 4, "default": 1},
        "process_count": {"maximum": 64},
        "processes_per_node": {},
        "memory": {"maximum": "8G"},
        "duration": {"minimum": "1m", "maximum": "2h", "default": "10m"},
        "queue_name": {"values": ["debug", "long"], "default": "debug"},
        "account": {"fixed": "proj42"}
    }))
}

fn fields(r: Result<Resources, Vec<FieldError>>) -> Vec<(String, String)> {
    r.unwrap_err()
        .into_iter()
        .map(|e| (e.field, e.problem))
        .collect()
}

#[test]
fn memory_sizes() {
    assert_eq!(parse_memory("4G"), Ok(4 << 30));
    assert_eq!(parse_memory("4GiB"), Ok(4 << 30));
    assert_eq!(parse_memory("4gb"), Ok(4 << 30));
    assert_eq!(parse_memory("512M"), Ok(512 << 20));
    assert_eq!(parse_memory("100"), Ok(100));
    assert_eq!(parse_memory(" 2 T "), Ok(2 << 40));
    for bad in [
        "",
        "G",
        "4X",
        "-1G",
        "1.5G",
        "2048P",
        "99999999999999999999",
    ] {
        assert!(parse_memory(bad).is_err(), "{bad:?}");
    }
    assert_eq!(format_memory(4 << 30), "4G");
    assert_eq!(format_memory(1536 << 20), "1536M");
    assert_eq!(format_memory(1000), "1000 bytes");
    assert_eq!(mib_rounded_up(1), 1);
    assert_eq!(mib_rounded_up(4 << 30), 4096);
}

#[test]
fn durations() {
    assert_eq!(parse_duration("3600"), Ok(3600));
    assert_eq!(parse_duration("1h"), Ok(3600));
    assert_eq!(parse_duration("90m"), Ok(5400));
    assert_eq!(parse_duration("1h30m"), Ok(5400));
    assert_eq!(parse_duration("2d"), Ok(172_800));
    assert_eq!(parse_duration("1d2h3m4s"), Ok(93_784));
    assert_eq!(parse_duration("01:30:00"), Ok(5400));
    assert_eq!(parse_duration("100:00:00"), Ok(360_000));
    assert_eq!(parse_duration("1-00:00:00"), Ok(86_400));
    assert_eq!(parse_duration("2-12:30:15"), Ok(217_815));
    for bad in [
        "",
        "h",
        "1x",
        "1:30",
        "1:60:00",
        "1-24:00:00",
        "1--1:00:00",
        "400d",
        "-5",
        "1.5h",
        "1 h",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
    assert_eq!(format_duration(5400), "1h30m");
    assert_eq!(format_duration(86_400), "1d");
    assert_eq!(format_duration(59), "59s");
    assert_eq!(hms(93_784), "26:03:04");
    assert_eq!(d_hms(93_784), "1-02:03:04");
    assert_eq!(minutes_rounded_up(61), 2);
}

#[test]
fn parse_accepts_units_and_refuses_bad_values() {
    let r = Resources::parse(
        &map(
            json!({"node_count": 2, "memory": "4G", "duration": "1h", "queue_name": "debug",
                    "account": null}),
        ),
        "resources",
    )
    .unwrap();
    assert_eq!(r.node_count, Some(2));
    assert_eq!(r.memory, Some(4 << 30));
    assert_eq!(r.duration, Some(3600));
    assert_eq!(r.queue_name.as_deref(), Some("debug"));
    assert_eq!(r.account, None);
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        json!({"node_count": 2, "memory": 4294967296u64, "duration": 3600, "queue_name": "debug"})
    );
    let errs = fields(Resources::parse(
        &map(json!({
            "nodes": 1, "node_count": "2", "process_count": 0, "processes_per_node": -1,
            "cpu_cores_per_process": 1.5, "duration": 0, "memory": true,
            "queue_name": "-q", "account": "a b", "reservation_id": 7
        })),
        "resources",
    ));
    let names: Vec<&str> = errs.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names.len(), 10, "{errs:?}");
    for f in [
        "resources.nodes",
        "resources.node_count",
        "resources.queue_name",
    ] {
        assert!(names.contains(&f), "{f} in {errs:?}");
    }
    assert!(errs.iter().any(|e| e.1.contains("at least 1")));
    // GPU cores may be 0 ("none"); names may not start with '-' or '.', nor exceed 64.
    assert!(ResourceName::GpuCoresPerProcess
        .parse_value(&json!(0))
        .is_ok());
    assert!(ResourceName::QueueName.parse_value(&json!(".x")).is_err());
    assert!(ResourceName::Account
        .parse_value(&json!("a".repeat(65)))
        .is_err());
}

#[test]
fn deserialising_is_the_same_parse() {
    let r: Resources = serde_json::from_value(json!({"duration": "90m", "memory": 1024})).unwrap();
    assert_eq!(r.duration, Some(5400));
    assert!(serde_json::from_value::<Resources>(json!({"duration": "soon"})).is_err());
    assert!(serde_json::from_value::<Resources>(json!({"gpus": 1})).is_err());
    let back: Resources = serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
    assert_eq!(back, r);
}

#[test]
fn defaults_and_fixed_values_fill_in() {
    let r = sim_rules().apply(&Map::new(), "sim").unwrap();
    assert_eq!(r.node_count, Some(1));
    assert_eq!(r.duration, Some(600));
    assert_eq!(r.queue_name.as_deref(), Some("debug"));
    assert_eq!(r.account.as_deref(), Some("proj42"));
    assert_eq!(r.memory, None);
    let r = sim_rules()
        .apply(
            &map(json!({"node_count": 2, "duration": "1h", "account": "proj42", "memory": "8G"})),
            "sim",
        )
        .unwrap();
    assert_eq!(
        (r.node_count, r.duration, r.memory),
        (Some(2), Some(3600), Some(8 << 30))
    );
}

#[test]
fn bounds_fixed_values_and_unknown_names_are_refused() {
    let cases = [
        (
            json!({"node_count": 5}),
            "resources.node_count",
            "is 5; the maximum is 4",
        ),
        (
            json!({"node_count": 0}),
            "resources.node_count",
            "must be at least 1",
        ),
        (
            json!({"duration": "3h"}),
            "resources.duration",
            "is 3h; the maximum is 2h",
        ),
        (
            json!({"duration": 30}),
            "resources.duration",
            "is 30s; the minimum is 1m",
        ),
        (
            json!({"memory": "9G"}),
            "resources.memory",
            "is 9G; the maximum is 8G",
        ),
        (
            json!({"queue_name": "gpu"}),
            "resources.queue_name",
            "must be one of debug, long",
        ),
        (
            json!({"account": "other"}),
            "resources.account",
            "is fixed at proj42",
        ),
        (
            json!({"reservation_id": "r1"}),
            "resources.reservation_id",
            "does not let clients set",
        ),
        (
            json!({"walltime": 10}),
            "resources.walltime",
            "unknown resource",
        ),
        (
            json!({"node_count": 2, "processes_per_node": 2, "process_count": 5}),
            "resources.process_count",
            "node_count (2) × processes_per_node (2)",
        ),
        (
            json!({"node_count": 2, "process_count": 3}),
            "resources.process_count",
            "whole multiple",
        ),
    ];
    for (given, field, problem) in cases {
        let errs = fields(sim_rules().apply(&map(given.clone()), "sim"));
        assert_eq!(errs.len(), 1, "{given}: {errs:?}");
        assert_eq!(errs[0].0, field, "{given}");
        assert!(errs[0].1.contains(problem), "{given}: {:?}", errs[0].1);
    }
    // Every problem is reported at once.
    let errs = fields(sim_rules().apply(&map(json!({"node_count": 9, "gpus": 1})), "sim"));
    assert_eq!(errs.len(), 2);
    // Without rules nothing can be set, and nothing is filled in.
    assert_eq!(
        ResourceRules::default().apply(&Map::new(), "t").unwrap(),
        Resources::default()
    );
    assert!(ResourceRules::default()
        .apply(&map(json!({"node_count": 1})), "t")
        .is_err());
}

#[test]
fn rules_are_checked_and_made_canonical() {
    assert!(sim_rules().check().is_empty());
    let bad = rules(json!({
        "node_count": {"minimum": 5, "maximum": 1},
        "duration": {"maximum": "soon"},
        "queue_name": {"minimum": 1},
        "memory": {"values": ["x"]},
        "account": {"fixed": "a", "default": "b"},
        "process_count": {"maximum": 4, "default": 8},
        "reservation_id": {"values": ["-bad"]}
    }));
    let got: Vec<String> = bad.check().into_iter().map(|e| e.field).collect();
    for f in [
        "resources.node_count.minimum",
        "resources.duration.maximum",
        "resources.queue_name.minimum",
        "resources.memory.values",
        "resources.account.fixed",
        "resources.process_count.default",
        "resources.reservation_id.values",
    ] {
        assert!(got.contains(&f.to_string()), "{f} in {got:?}");
    }
    assert!(serde_json::from_value::<ResourceRules>(json!({"nodes": {}})).is_err());
    assert!(serde_json::from_value::<ResourceRules>(json!({"node_count": {"max": 1}})).is_err());
    let canon = serde_json::to_value(sim_rules().canonical()).unwrap();
    assert_eq!(
        canon["duration"],
        json!({"minimum": 60, "maximum": 7200, "default": 600})
    );
    assert_eq!(canon["memory"], json!({"maximum": 8u64 << 30}));
}

#[test]
fn a_sub_job_overlays_its_own_resources() {
    let job = Resources::parse(
        &map(
            json!({"node_count": 2, "processes_per_node": 4, "process_count": 8,
                    "duration": 3600, "queue_name": "long"}),
        ),
        "r",
    )
    .unwrap();
    let sub = Resources::parse(&map(json!({"node_count": 1, "duration": 300})), "r").unwrap();
    let eff = job.overlay(&sub);
    assert_eq!(eff.node_count, Some(1));
    assert_eq!(eff.process_count, None);
    assert_eq!(eff.processes_per_node, None);
    assert_eq!(eff.duration, Some(300));
    assert_eq!(eff.queue_name.as_deref(), Some("long"));
    assert!(eff.check_layout().is_ok());
    assert_eq!(job.overlay(&Resources::default()), job);
    assert_eq!(job.computed_node_count(), 2);
    let only_ppn = Resources::parse(
        &map(json!({"processes_per_node": 4, "process_count": 8})),
        "r",
    )
    .unwrap();
    assert_eq!(only_ppn.computed_node_count(), 2);
    assert_eq!(Resources::default().computed_node_count(), 1);
}

#[test]
fn granted_resources_texts_are_bounded() {
    let g = GrantedResources {
        queue_name: Some("debug".into()),
        ..Default::default()
    };
    assert!(g.texts_fit(64));
    assert!(!g.is_empty());
    let bad = GrantedResources {
        account: Some("a\nb".into()),
        ..Default::default()
    };
    assert!(!bad.texts_fit(64));
    assert!(GrantedResources::default().is_empty());
}

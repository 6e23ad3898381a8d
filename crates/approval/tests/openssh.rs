//! Interoperability with OpenSSH itself: signatures made by `ssh-keygen -Y sign` verify here,
//! signatures made here (with a key file, and through a real `ssh-agent`) verify with
//! `ssh-keygen -Y verify`, and allowed-signers files mean the same to both. Needs OpenSSH's
//! `ssh-keygen`, `ssh-agent` and `ssh-add` (the tests fail without them).

use hpcsera_approval::{
    check_approval, parse_public_key, sign_with_private_key, verify, AllowedSigners,
    ApprovalMessage, Expect, Presented, Refusal, SignatureError, SshAgent, NAMESPACE,
};
#[path = "common/openssh.rs"]
mod tools;

use std::process::Command;
use tools::{fingerprint as fingerprint_by_openssh, keygen, public_line, run, Agent};

const DIGEST: &str = "5f2b7c1e0a9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b";

fn message() -> String {
    ApprovalMessage::new(DIGEST, "proj", &["site-a".into()], Some(4_000_000_000))
        .unwrap()
        .render()
}

fn expect(now: i64) -> Expect<'static> {
    Expect {
        project: "proj",
        site: "site-a",
        digest: DIGEST,
        now,
    }
}

const KEY_TYPES: &[(&str, &[&str])] = &[
    ("ed25519", &["-t", "ed25519"]),
    ("ecdsa256", &["-t", "ecdsa", "-b", "256"]),
    ("ecdsa384", &["-t", "ecdsa", "-b", "384"]),
    ("rsa", &["-t", "rsa", "-b", "3072"]),
];

#[test]
fn signatures_by_ssh_keygen_verify_here_for_every_key_type() {
    let dir = tempfile::tempdir().unwrap();
    let msg = message();
    for (name, args) in KEY_TYPES {
        let key = keygen(dir.path(), name, args);
        let sig = tools::sign(&key, NAMESPACE, &msg);
        let v = verify(msg.as_bytes(), &sig).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(v.fingerprint, fingerprint_by_openssh(&key), "{name}");
        let pasted = parse_public_key(&public_line(&key)).unwrap();
        assert_eq!(pasted.fingerprint, v.fingerprint);
        assert_eq!(pasted.comment, *name);
        let allowed = AllowedSigners::parse(&format!("alice {}", pasted.openssh)).unwrap();
        let presented = Presented {
            message: Some(&msg),
            signature: Some(&sig),
            approver: Some("alice"),
        };
        let ok = check_approval(presented, &allowed, &expect(1_800_000_000)).unwrap();
        assert_eq!(ok.fingerprint, v.fingerprint);
        // One changed byte of the message and the signature no longer holds.
        let other = msg.replace("site-a", "site-b");
        assert!(matches!(
            verify(other.as_bytes(), &sig),
            Err(SignatureError::Invalid { .. })
        ));
    }
}

#[test]
fn signatures_made_here_verify_with_ssh_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let msg = message();
    for (name, args) in KEY_TYPES {
        let key = keygen(dir.path(), name, args);
        let text = std::fs::read_to_string(&key).unwrap();
        if *name == "rsa" {
            // RSA key files sign through the ssh-agent (a_real_ssh_agent_signs_…).
            let err = sign_with_private_key(&text, msg.as_bytes()).unwrap_err();
            assert!(err.contains("--ssh-agent"), "{err}");
            continue;
        }
        let sig =
            sign_with_private_key(&text, msg.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let allowed = format!("alice {}", public_line(&key));
        let (ok, out) = tools::verify(&allowed, "alice", &msg, &sig);
        assert!(ok, "{name}: {out}");
        assert!(
            out.contains("Good \"hpcsera-code\" signature for alice"),
            "{out}"
        );
        let (ok, _) = tools::verify(&allowed, "bob", &msg, &sig);
        assert!(!ok, "{name}: another principal");
        let (ok, _) = tools::verify(&allowed, "alice", &msg.replace("proj", "prok"), &sig);
        assert!(!ok, "{name}: another message");
    }
}

#[test]
fn another_namespace_is_refused_by_both() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "k", &["-t", "ed25519"]);
    let msg = message();
    let sig = tools::sign(&key, "git", &msg);
    assert_eq!(
        verify(msg.as_bytes(), &sig).unwrap_err(),
        SignatureError::Namespace {
            found: "git".into()
        }
    );
    let (ok, _) = tools::verify(&format!("alice {}", public_line(&key)), "alice", &msg, &sig);
    assert!(!ok);
}

#[test]
fn allowed_signers_options_mean_the_same_to_ssh_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(dir.path(), "k", &["-t", "ed25519"]);
    let other = keygen(dir.path(), "other", &["-t", "ed25519"]);
    let pubkey = public_line(&key);
    let msg = message();
    let sig = tools::sign(&key, NAMESPACE, &msg);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // (file, principal, accepted?)
    let cases = [
        (format!("alice {pubkey}"), "alice", true),
        (format!("*@example.org,alice {pubkey}"), "alice", true),
        (format!("\"alice\" {pubkey}"), "alice", true),
        (format!("*,!alice {pubkey}"), "alice", false),
        (format!("bob {pubkey}"), "alice", false),
        (
            format!("alice namespaces=\"hpcsera-*\" {pubkey}"),
            "alice",
            true,
        ),
        (
            format!("alice namespaces=\"git,file\" {pubkey}"),
            "alice",
            false,
        ),
        (
            format!("alice valid-after=\"20200101Z\",valid-before=\"20990101Z\" {pubkey}"),
            "alice",
            true,
        ),
        (
            format!("alice VALID-BEFORE=\"20200101\" {pubkey}"),
            "alice",
            false,
        ),
        (
            format!("alice valid-after=\"20990101000000Z\" {pubkey}"),
            "alice",
            false,
        ),
        (
            format!("# comment\n\nalice {}", public_line(&other)),
            "alice",
            false,
        ),
    ];
    for (file, principal, accepted) in cases {
        let (theirs, out) = tools::verify(&file, principal, &msg, &sig);
        assert_eq!(theirs, accepted, "ssh-keygen on {file:?}: {out}");
        let ours = AllowedSigners::parse(&file).unwrap();
        let presented = Presented {
            message: Some(&msg),
            signature: Some(&sig),
            approver: Some(principal),
        };
        let r = check_approval(presented, &ours, &expect(now));
        assert_eq!(r.is_ok(), accepted, "ours on {file:?}: {r:?}");
        if !accepted {
            assert!(matches!(r, Err(Refusal::Signer(_))), "{r:?}");
        }
    }
}

#[test]
fn a_passphrase_protected_key_file_points_to_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked");
    let (ok, out) = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "secret passphrase", "-f"])
        .arg(&path));
    assert!(ok, "{out}");
    let err = sign_with_private_key(&std::fs::read_to_string(&path).unwrap(), b"x").unwrap_err();
    assert!(err.contains("--ssh-agent"), "{err}");
    let err = sign_with_private_key("not a key", b"x").unwrap_err();
    assert!(err.contains("cannot read the private key"), "{err}");
}

#[test]
fn a_real_ssh_agent_signs_what_ssh_keygen_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(dir.path());
    let ed = keygen(dir.path(), "ed", &["-t", "ed25519"]);
    let rsa = keygen(dir.path(), "rsa", &["-t", "rsa", "-b", "3072"]);
    let ecdsa = keygen(dir.path(), "ecdsa", &["-t", "ecdsa", "-b", "256"]);
    for k in [&ed, &rsa, &ecdsa] {
        agent.add(k);
    }
    let mut client = SshAgent::connect(&agent.sock).unwrap();
    let keys = client.keys().unwrap();
    assert_eq!(keys.len(), 3, "{keys:?}");
    let msg = message();
    for key in &keys {
        let sig = client.sign(&key.key, msg.as_bytes()).unwrap();
        let path = dir.path().join(&key.comment);
        assert_eq!(key.fingerprint, fingerprint_by_openssh(&path));
        let allowed = format!("alice {}", public_line(&path));
        let (ok, out) = tools::verify(&allowed, "alice", &msg, &sig);
        assert!(ok, "{}: {out}", key.comment);
        assert_eq!(
            verify(msg.as_bytes(), &sig).unwrap().fingerprint,
            key.fingerprint
        );
    }
    // A key the agent does not hold: it refuses, and says so.
    let stranger = keygen(dir.path(), "stranger", &["-t", "ed25519"]);
    let stranger = ssh_key::PublicKey::from_openssh(&public_line(&stranger)).unwrap();
    let err = client.sign(&stranger, msg.as_bytes()).unwrap_err();
    assert!(err.contains("refused"), "{err}");
}

//! config.json: load, identify/decide (`spec_stage::evaluate` with an in-memory pod source),
//! and the rewrite `create` does when gids are dropped.
//!
//! Properties, for any bytes:
//! - nothing panics;
//! - where libcontainer's own typed parse (oci-spec) accepts the spec, the stage read the same
//!   uid, gid and additionalGids (what we decide on is what libcontainer runs);
//! - the rewritten document parses, equals the original everywhere except
//!   `process.user.additionalGids` (key order included; byte for byte outside that member's
//!   value), and that member is exactly the kept gids, as read back both by the stage and by
//!   oci-spec; the editor reads every document serde_json reads and refuses only a key that
//!   appears twice on the path (which oci-spec refuses too).

#![no_main]

use std::path::PathBuf;

use fuzz_support::{
    at_path, derived_grant, only_a_number_list_changed, same_except_additional_gids, self_check,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use strict_supplementalgroups::config::Config;
use strict_supplementalgroups::pod::{LookupError, PodGroups, PodGroupsSource, PodRef};
use strict_supplementalgroups::spec_stage::{self, decide, load::BundleSpec, persist};

const USER: [&str; 2] = ["process", "user"];

/// Grants the given gids to whichever pod is asked for.
struct Grants(Vec<u32>);

impl PodGroupsSource for Grants {
    fn describe(&self) -> String {
        "fuzz grants".to_owned()
    }

    fn lookup(&self, pod: &PodRef) -> Result<PodGroups, LookupError> {
        Ok(PodGroups {
            uid: pod.uid.clone().unwrap_or_default(),
            supplemental_groups: self.0.clone(),
            ..Default::default()
        })
    }
}

/// uid, gid and additionalGids as libcontainer reads them, if it accepts the document.
fn typed_user(raw: &[u8]) -> Option<(u32, u32, Vec<u32>)> {
    let spec: oci_spec::runtime::Spec = serde_json::from_slice(raw).ok()?;
    Some(match spec.process() {
        Some(p) => (
            p.user().uid(),
            p.user().gid(),
            p.user().additional_gids().clone().unwrap_or_default(),
        ),
        None => (0, 0, Vec::new()),
    })
}

fuzz_target!(init: self_check(), |data: &[u8]| {
    let Ok(spec) = BundleSpec::parse(PathBuf::from("/fuzz/bundle/config.json"), data.to_vec())
    else {
        return;
    };
    let user = &spec.user;
    let typed = typed_user(data);
    if let Some(typed) = &typed {
        assert_eq!(
            (user.uid, user.gid, &user.additional_gids),
            (typed.0, typed.1, &typed.2),
            "the stage and libcontainer read process.user differently"
        );
    }

    let grant = derived_grant(&user.additional_gids);
    let expected = decide::decide(&user.additional_gids, user.gid, grant.iter().copied());
    for gid in &expected.kept {
        assert!(*gid == user.gid || grant.contains(gid), "kept ungranted gid {gid}");
    }
    let eval = spec_stage::evaluate(&spec, "fuzz-ctr", &Config::default(), &Grants(grant));
    if let Some(decision) = eval.ok().and_then(|e| e.decision) {
        assert_eq!(decision, expected);
    }
    if !expected.drops_any() {
        return;
    }

    // What enforce_on_bundle writes (without the file replacement).
    let mut edit = match persist::JsonEdit::parse(data) {
        Ok(edit) => edit,
        Err(err) => panic!("serde_json read the document, the editor must too: {err:#}"),
    };
    if let Err(err) = edit.set_additional_gids(&USER, &expected.kept) {
        // The only refusal: a key on the path twice (serde_json reads the last one).
        assert!(format!("{err:#}").contains("appears twice"), "{err:#}");
        assert!(typed.is_none(), "oci-spec accepted a duplicated key: {err:#}");
        return;
    }
    let out = edit.into_bytes();
    only_a_number_list_changed(data, &out);

    let before: Value = serde_json::from_slice(data).expect("parsed once already");
    let after: Value = serde_json::from_slice(&out).expect("the rewrite must parse");
    if let Err(diff) = same_except_additional_gids(&before, &after, &USER) {
        panic!("the rewrite changed more than additionalGids: {diff}");
    }
    let written = at_path(&after, &["process", "user", "additionalGids"]);
    let kept: Vec<Value> = expected.kept.iter().map(|&g| Value::from(g)).collect();
    assert_eq!(written, Some(&Value::Array(kept)));

    let again = BundleSpec::parse(spec.path.clone(), out.clone()).expect("the rewrite must load");
    assert_eq!(again.user.additional_gids, expected.kept);
    assert_eq!((again.user.uid, again.user.gid), (user.uid, user.gid));
    assert_eq!(again.annotations, spec.annotations);
    if typed.is_some() {
        let typed_after = typed_user(&out).expect("libcontainer accepted the original");
        assert_eq!(typed_after, (user.uid, user.gid, expected.kept.clone()));
    }
});

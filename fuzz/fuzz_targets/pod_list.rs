//! A PodList, as the kubelet's `/pods` reply and as a pods file: the pods file reader
//! (`podgroups::file::parse_pod_list`, JSON or YAML), the serde view (`podgroups::podlist`), and
//! the hand-made scanner of `/pods` (`podgroups::podscan`) checked against that view; and one
//! pod, as the API server source reads its answer (`PodView`, `groups_of`).
//!
//! Properties, for any bytes:
//! - nothing panics, and no input makes either reader allocate without bound;
//! - wherever serde_json reads the document as a PodList view, the scanner reads it too and
//!   gives the same answer for every pod asked for (found with the same groups, not found,
//!   another uid, invalid gids) — the scanner may reject or skip more leniently only where
//!   serde rejects.

#![no_main]

use libfuzzer_sys::fuzz_target;
use strict_supplementalgroups::pod::PodRef;
use strict_supplementalgroups::podgroups::file::parse_pod_list;
use strict_supplementalgroups::podgroups::podlist::{PodListView, PodView, find_pod, groups_of};
use strict_supplementalgroups::podgroups::podscan::scan_pod_list;
use strict_supplementalgroups::podgroups::volumes::claims_of;

fn pod(namespace: &str, name: &str, uid: Option<&str>) -> PodRef {
    PodRef {
        namespace: namespace.into(),
        name: name.into(),
        uid: uid.map(Into::into),
    }
}

/// The answer a source gives for `wanted`, as text (LookupError is not comparable).
fn answer(list: &PodListView, wanted: &PodRef) -> Result<String, String> {
    let items = list.validate()?;
    let found = find_pod(items, wanted, "fuzz").and_then(|pod| {
        Ok((
            groups_of(pod, wanted, "fuzz")?,
            claims_of(pod, wanted, "fuzz")?,
        ))
    });
    Ok(format!("{found:?}"))
}

fuzz_target!(|data: &[u8]| {
    // The pods file: JSON or YAML, then the lookup a FileSource makes.
    let mut wanted = vec![
        pod(
            "user-alice",
            "bypass-pod",
            Some("5d7a1c1e-0d6e-4c1b-9a38-bypass000001"),
        ),
        pod("user-alice", "bypass-pod", Some("u1")),
        pod("ns", "p", None),
    ];
    if let Ok(list) = parse_pod_list(data) {
        for w in &wanted {
            let _ = answer(&list, w);
        }
    }

    // The API server's answer for one pod: the same view of a single item.
    if let Ok(one) = serde_json::from_slice::<PodView>(data) {
        let _ = groups_of(&one, &wanted[0], "fuzz");
        let _ = claims_of(&one, &wanted[0], "fuzz");
    }

    // /pods: the scanner against the serde view. Ask for the document's own first pod too
    // (by its uid, without one, and with another), so that mutated names still match.
    let via_serde = serde_json::from_slice::<PodListView>(data);
    let first = via_serde
        .as_ref()
        .ok()
        .and_then(|list| list.items.as_deref())
        .and_then(|items| items.first())
        .map(|p| &p.metadata);
    if let Some(meta) = first
        && let (Some(ns), Some(name)) = (&meta.namespace, &meta.name)
    {
        wanted.push(pod(ns, name, meta.uid.as_deref()));
        wanted.push(pod(ns, name, None));
        wanted.push(pod(ns, name, Some("another-uid")));
    }
    for w in &wanted {
        let scanned = scan_pod_list(data, w);
        if let Ok(list) = &via_serde {
            let expected = answer(list, w);
            let got = scanned
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|l| answer(l, w));
            match (&expected, &got) {
                (a, b) if a == b => {}
                // A document serde reads but that is no PodList: the scanner may stop earlier.
                (Err(_), Err(_)) => {}
                _ => panic!("scanner {got:?} but serde {expected:?} for {w}"),
            }
        }
    }
});

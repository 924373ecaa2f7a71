//! A PodList file on local disk (JSON or YAML, as `kubectl get pods -A -o json|yaml` prints
//! it): for the demo, for tests, and for air-gapped nodes managed by other tooling.
//! Read on every lookup, so an updated file takes effect for the next container.
//!
//! The file may be a `List` that also holds the PersistentVolumeClaims and PersistentVolumes of
//! its pods (`kubectl get pods,pvc,pv -A -o json`: every item carries its `kind`; items of a
//! `PodList` carry none and are pods): a pod's volume gids are then resolved from them by the
//! same rules as through the API server (see `volumes`), and a pod whose claims are not in the
//! file fails like one whose claims the API server does not have.

use std::path::PathBuf;

use anyhow::Context;

use super::podlist::{ObjectView, PodListView, find_pod, groups_of};
use super::volumes::{ClaimStore, claims_of, volume_gids};
use crate::pod::{LookupError, PodGroups, PodGroupsSource, PodRef};

const SOURCE_NAME: &str = "pods file";

pub struct FileSource {
    path: PathBuf,
}

impl FileSource {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    fn read(&self) -> anyhow::Result<PodListView> {
        let bytes = std::fs::read(&self.path)
            .with_context(|| format!("reading pods file {}", self.path.display()))?;
        parse_pod_list(&bytes).with_context(|| format!("parsing pods file {}", self.path.display()))
    }
}

/// JSON when the first non-blank byte says so, YAML otherwise.
pub fn parse_pod_list(bytes: &[u8]) -> anyhow::Result<PodListView> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        Ok(serde_json::from_slice(bytes)?)
    } else {
        let text = std::str::from_utf8(bytes).context("not UTF-8")?;
        Ok(serde_saphyr::from_str(text)?)
    }
}

/// The claims and volumes among a file's items.
struct FileClaims<'a> {
    path: &'a std::path::Path,
    items: &'a [ObjectView],
}

impl FileClaims<'_> {
    fn find(&self, kind: &str, namespace: Option<&str>, name: &str) -> Option<ObjectView> {
        self.items
            .iter()
            .find(|i| {
                i.kind.as_deref() == Some(kind)
                    && i.metadata.name.as_deref() == Some(name)
                    && namespace.is_none_or(|ns| i.metadata.namespace.as_deref() == Some(ns))
            })
            .cloned()
    }
}

impl ClaimStore for FileClaims<'_> {
    fn describe(&self) -> String {
        format!("pods file {}", self.path.display())
    }

    fn claim(&self, namespace: &str, name: &str) -> anyhow::Result<Option<ObjectView>> {
        Ok(self.find("PersistentVolumeClaim", Some(namespace), name))
    }

    fn volume(&self, name: &str) -> anyhow::Result<Option<ObjectView>> {
        Ok(self.find("PersistentVolume", None, name))
    }
}

impl PodGroupsSource for FileSource {
    fn describe(&self) -> String {
        format!("pods file {}", self.path.display())
    }

    fn lookup(&self, pod: &PodRef) -> Result<PodGroups, LookupError> {
        let source = |cause: anyhow::Error| LookupError::Source {
            pod: pod.clone(),
            source_name: SOURCE_NAME,
            cause,
        };
        let list = self.read().map_err(source)?;
        let items = list
            .validate()
            .map_err(|reason| source(anyhow::anyhow!("{}: {reason}", self.path.display())))?;
        let found = find_pod(items, pod, SOURCE_NAME)?;
        let mut groups = groups_of(found, pod, SOURCE_NAME)?;
        let claims = claims_of(found, pod, SOURCE_NAME)?;
        if !claims.is_empty() {
            let store = FileClaims {
                path: &self.path,
                items,
            };
            groups.volume_gids = volume_gids(found, pod, &claims, &store, SOURCE_NAME)?;
        }
        Ok(groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodRef {
        PodRef {
            namespace: "user-alice".into(),
            name: "bypass-pod".into(),
            uid: Some("u1".into()),
        }
    }

    #[test]
    fn reads_yaml_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("pods.yaml");
        std::fs::write(
            &yaml,
            "apiVersion: v1\nkind: List\nitems:\n- metadata:\n    namespace: user-alice\n    \
             name: bypass-pod\n    uid: u1\n  spec:\n    securityContext:\n      \
             supplementalGroups: [60000]\n      fsGroup: 70000\n      runAsGroup: 1000\n",
        )
        .unwrap();
        let g = FileSource::new(yaml).lookup(&pod()).unwrap();
        assert_eq!(
            (g.supplemental_groups, g.fs_group, g.run_as_group),
            (vec![60000], Some(70000), Some(1000))
        );

        let json = dir.path().join("pods.json");
        std::fs::write(
            &json,
            r#"{"kind":"PodList","items":[{"metadata":{"namespace":"user-alice","name":"bypass-pod","uid":"u1"},"spec":{"securityContext":{"supplementalGroups":[60000]}}}]}"#,
        )
        .unwrap();
        let g = FileSource::new(json).lookup(&pod()).unwrap();
        assert_eq!(g.supplemental_groups, vec![60000]);
    }

    #[test]
    fn unreadable_or_garbage_files_are_source_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = FileSource::new(dir.path().join("nope.json"));
        let err = missing.lookup(&pod()).unwrap_err();
        assert!(matches!(err, LookupError::Source { .. }));
        assert!(err.to_string().contains("nope.json"), "{err}");

        let garbage = dir.path().join("garbage.json");
        std::fs::write(&garbage, "{ not json").unwrap();
        let err = FileSource::new(garbage).lookup(&pod()).unwrap_err();
        assert!(matches!(err, LookupError::Source { .. }), "{err}");
    }
}

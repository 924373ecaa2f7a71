//! Where a pod's groups come from: its `supplementalGroups`, `fsGroup`, the gids of its
//! PersistentVolumes, and the `runAsGroup`s of the pod and its containers.
//!
//! The OCI spec does not carry them (containerd resets the sandbox's list, merges the image's
//! groups into the app's, and exec processes carry no annotations), so they are asked of a
//! source: a local PodList file, the kubelet, or the API server. `podlist` reads the objects,
//! `volumes` turns a pod's claims into gids by the kubelet's rules, `https` is the client of
//! the two HTTP sources.

pub mod apiserver;
pub mod cache;
pub mod file;
pub mod https;
pub mod kubeconfig;
pub mod kubelet;
pub mod podlist;
pub mod podscan;
pub mod volumes;

use crate::pod::PodGroupsSource;

/// Whether a lookup may write the cache (`create`, `exec`) or must change nothing (`explain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheWrites {
    Allowed,
    ReadOnly,
}

/// The source the configuration names. The kubelet and API server sources sit behind the
/// per-pod-uid cache under `state_root`; building a source reads no file and initialises no
/// TLS (that happens on a cache miss), so it costs nothing for sandboxes and unmanaged
/// containers, which are never looked up.
pub fn from_config(
    config: &crate::config::Config,
    state_root: &std::path::Path,
    writes: CacheWrites,
) -> Box<dyn PodGroupsSource> {
    use crate::config::SourceKind;
    let cache = || cache::PodGroupsCache::new(state_root, config.http.cache_max_age, writes);
    match &config.source {
        SourceKind::File(path) => Box::new(file::FileSource::new(path.clone())),
        SourceKind::Kubelet => Box::new(
            cache::CachedSource::new(kubelet::KubeletSource::new(config.http.clone()), cache())
                .with_lock_wait(config.http.lookup_deadline),
        ),
        SourceKind::Apiserver => Box::new(
            cache::CachedSource::new(
                apiserver::ApiServerSource::new(config.http.clone()),
                cache(),
            )
            .with_lock_wait(config.http.lookup_deadline),
        ),
    }
}

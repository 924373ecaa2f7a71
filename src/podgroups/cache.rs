//! A per-node cache of pod lookups, keyed by pod uid: `<state root>/~pod-groups-cache/<uid>.json`
//! (`~` is not allowed in a container id, so no container's state directory can be this one).
//!
//! A pod's `supplementalGroups` and `fsGroup` cannot change during its life (the API server
//! rejects such updates) and a uid names one pod for ever, so the answer for the first
//! container of a pod serves its other containers (and restarts) without a request. Entries are
//! written to a temporary file and renamed, so concurrent creates see either no entry or a whole
//! one; an entry is removed when the pod's sandbox is deleted, and entries older than
//! `cache-max-age` are swept whenever a new one is written (and never used).
//!
//! Lookups without a uid never touch the cache: a name alone may name another pod tomorrow.
//!
//! A miss is looked up once for all: the first process to miss takes an exclusive lock on
//! `<uid>.lock` and asks the source; the others (a pod's containers are often created at the
//! same moment) wait for that lock, bounded by the lookup deadline, and then find the entry.

use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::CacheWrites;

use crate::pod::{LookupError, PodGroups, PodGroupsSource, PodRef};

/// The cache directory's name under the runtime's state root.
pub const CACHE_DIR: &str = "~pod-groups-cache";
/// 2: the whole `PodGroups` (volume gids and runAsGroups); entries of 1 are ignored.
const ENTRY_VERSION: u32 = 2;
/// Temporary files older than this are leftovers of a crashed writer.
const STALE_TEMP: Duration = Duration::from_secs(600);

/// What one file holds.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    version: u32,
    namespace: String,
    name: String,
    uid: String,
    groups: PodGroups,
    /// Which source answered, for people reading the directory.
    source: String,
    /// Seconds since the epoch.
    stored_at: u64,
}

/// A pod uid usable as a file name: what Kubernetes generates (a UUID) and little else.
pub fn valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 128
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The cache in one state root.
#[derive(Debug, Clone)]
pub struct PodGroupsCache {
    dir: PathBuf,
    max_age: Duration,
    writes: CacheWrites,
}

impl PodGroupsCache {
    pub fn new(state_root: &Path, max_age: Duration, writes: CacheWrites) -> Self {
        Self {
            dir: state_root.join(CACHE_DIR),
            max_age,
            writes,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry_path(&self, uid: &str) -> Option<PathBuf> {
        valid_uid(uid).then(|| self.dir.join(format!("{uid}.json")))
    }

    /// The cached groups of this pod, if a fresh entry for its uid and name exists.
    pub fn get(&self, pod: &PodRef) -> Option<PodGroups> {
        let uid = pod.uid.as_deref()?;
        let path = self.entry_path(uid)?;
        let bytes = match read_private_file(&path) {
            Ok(Some(b)) => b,
            Ok(None) => return None,
            Err(err) => {
                tracing::debug!(path = %path.display(), %err, "ignoring unreadable cache entry");
                return None;
            }
        };
        let entry: Entry = match serde_json::from_slice(&bytes) {
            Ok(e) => e,
            Err(err) => {
                tracing::debug!(path = %path.display(), %err, "ignoring corrupt cache entry");
                return None;
            }
        };
        if entry.version != ENTRY_VERSION
            || entry.uid != uid
            || entry.groups.uid != uid
            || entry.namespace != pod.namespace
            || entry.name != pod.name
        {
            tracing::debug!(path = %path.display(), "cache entry is for another pod; ignoring it");
            return None;
        }
        let age = Duration::from_secs(now_secs().saturating_sub(entry.stored_at));
        if age > self.max_age {
            tracing::debug!(path = %path.display(), ?age, "cache entry too old; ignoring it");
            return None;
        }
        Some(entry.groups)
    }

    /// Stores an answer (best effort: a cache that cannot be written only costs a request
    /// later), then sweeps old entries.
    pub fn put(&self, pod: &PodRef, groups: &PodGroups, source: &str) {
        if self.writes == CacheWrites::ReadOnly {
            return;
        }
        let Some(uid) = pod.uid.as_deref() else {
            return;
        };
        if groups.uid != uid {
            return;
        }
        let Some(path) = self.entry_path(uid) else {
            return;
        };
        let entry = Entry {
            version: ENTRY_VERSION,
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: uid.to_owned(),
            groups: groups.clone(),
            source: source.to_owned(),
            stored_at: now_secs(),
        };
        if let Err(err) = self.write_atomically(&path, &entry) {
            tracing::warn!(path = %path.display(), error = %format!("{err:#}"), "could not cache pod groups");
            return;
        }
        self.sweep();
    }

    fn write_atomically(&self, path: &Path, entry: &Entry) -> anyhow::Result<()> {
        use anyhow::Context as _;
        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e).with_context(|| format!("creating {}", self.dir.display()));
            }
        }
        let bytes = serde_json::to_vec(entry)?;
        crate::atomic_file::replace(path, &bytes, |_| Ok(()))
    }

    /// Removes entries older than the maximum age and temporary files left by crashed writers.
    pub fn sweep(&self) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        for entry in dir.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let limit =
                if (name.ends_with(".json") || name.ends_with(".lock")) && !name.starts_with('.') {
                    self.max_age
                } else if name.starts_with('.') && name.ends_with(".tmp") {
                    STALE_TEMP
                } else {
                    continue;
                };
            let Ok(modified) = entry.metadata().and_then(|m| m.modified()) else {
                continue;
            };
            if now.duration_since(modified).unwrap_or_default() > limit {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => tracing::debug!(file = %name, "swept old pod-groups cache entry"),
                    Err(err) => tracing::debug!(file = %name, %err, "sweeping cache entry"),
                }
            }
        }
    }
}

/// An exclusive lock on one pod uid's lookup; released when dropped.
pub struct LookupLock {
    _file: std::fs::File,
}

impl PodGroupsCache {
    /// Waits up to `wait` for the lock on looking up pod `uid`; `None` when the cache is read
    /// only, the uid is no file name, or the wait ran out (the caller then asks the source
    /// itself: the lock only saves requests).
    pub fn lock_lookup(&self, uid: &str, wait: Duration) -> Option<LookupLock> {
        use std::os::fd::AsRawFd as _;
        if self.writes == CacheWrites::ReadOnly || !valid_uid(uid) {
            return None;
        }
        if let Err(err) = std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            if err.kind() != std::io::ErrorKind::AlreadyExists {
                tracing::debug!(%err, "no lookup lock: creating the cache directory");
                return None;
            }
        }
        let path = self.dir.join(format!("{uid}.lock"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|err| tracing::debug!(%err, path = %path.display(), "no lookup lock"))
            .ok()?;
        let deadline = std::time::Instant::now() + wait;
        loop {
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Some(LookupLock { _file: file });
            }
            if std::time::Instant::now() >= deadline {
                tracing::debug!(path = %path.display(), "lookup lock still held; asking anyway");
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Removes the entry of pod `uid` from the cache under `state_root` (the sandbox is going
/// away), and its lookup lock. Best effort: logged, never an error.
pub fn remove_entry(state_root: &Path, uid: &str) {
    if !valid_uid(uid) {
        return;
    }
    let _ = std::fs::remove_file(state_root.join(CACHE_DIR).join(format!("{uid}.lock")));
    let path = state_root.join(CACHE_DIR).join(format!("{uid}.json"));
    match std::fs::remove_file(&path) {
        Ok(()) => tracing::debug!(path = %path.display(), "removed pod-groups cache entry"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            tracing::warn!(path = %path.display(), %err, "could not remove pod-groups cache entry")
        }
    }
}

/// Reads a regular file owned by us that is not a symlink; Ok(None) when it does not exist.
fn read_private_file(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    let mut file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if !meta.is_file() || meta.uid() != euid || meta.len() > 64 * 1024 {
        return Err(std::io::Error::other(
            "not a small regular file owned by this user",
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// A source behind the cache.
pub struct CachedSource<S> {
    inner: S,
    cache: PodGroupsCache,
    /// How long a miss waits for another process looking up the same pod.
    lock_wait: Duration,
}

impl<S: PodGroupsSource> CachedSource<S> {
    pub fn new(inner: S, cache: PodGroupsCache) -> Self {
        Self {
            inner,
            cache,
            lock_wait: Duration::from_secs(10),
        }
    }

    /// Bounds the wait for a concurrent lookup of the same pod (the lookup deadline).
    pub fn with_lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }
}

impl<S: PodGroupsSource> PodGroupsSource for CachedSource<S> {
    fn describe(&self) -> String {
        format!(
            "{} (answers cached by pod uid in {})",
            self.inner.describe(),
            self.cache.dir().display()
        )
    }

    fn lookup(&self, pod: &PodRef) -> Result<PodGroups, LookupError> {
        if let Some(groups) = self.cache.get(pod) {
            tracing::debug!(pod = %pod, "pod groups served from the cache");
            return Ok(groups);
        }
        let _lock = pod
            .uid
            .as_deref()
            .and_then(|uid| self.cache.lock_lookup(uid, self.lock_wait));
        if _lock.is_some() {
            // Whoever held the lock may have answered for us.
            if let Some(groups) = self.cache.get(pod) {
                tracing::debug!(pod = %pod, "pod groups served from the cache");
                return Ok(groups);
            }
        }
        let groups = self.inner.lookup(pod)?;
        self.cache.put(pod, &groups, &self.inner.describe());
        Ok(groups)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    struct Counting {
        calls: Cell<u32>,
        answer: PodGroups,
    }

    impl PodGroupsSource for Counting {
        fn describe(&self) -> String {
            "counting".into()
        }
        fn lookup(&self, pod: &PodRef) -> Result<PodGroups, LookupError> {
            self.calls.set(self.calls.get() + 1);
            if pod.name == "missing" {
                return Err(LookupError::NotFound {
                    pod: pod.clone(),
                    source_name: "counting",
                });
            }
            Ok(self.answer.clone())
        }
    }

    fn pod(name: &str, uid: Option<&str>) -> PodRef {
        PodRef {
            namespace: "ns".into(),
            name: name.into(),
            uid: uid.map(Into::into),
        }
    }

    fn source(uid: &str) -> Counting {
        Counting {
            calls: Cell::new(0),
            answer: PodGroups {
                uid: uid.into(),
                supplemental_groups: vec![60000],
                fs_group: Some(70000),
                ..Default::default()
            },
        }
    }

    /// A container id can never name the cache directory (once, `pod-groups-cache` could).
    #[test]
    fn the_cache_directory_is_no_container_id() {
        assert!(crate::container_state::validate_id(CACHE_DIR).is_err());
    }

    #[test]
    fn second_lookup_of_a_uid_is_served_from_the_cache() {
        let root = tempfile::tempdir().unwrap();
        let cache =
            PodGroupsCache::new(root.path(), Duration::from_secs(3600), CacheWrites::Allowed);
        let cached = CachedSource::new(source("u1"), cache.clone());
        let first = cached.lookup(&pod("p", Some("u1"))).unwrap();
        let second = cached.lookup(&pod("p", Some("u1"))).unwrap();
        assert_eq!(first, second);
        assert_eq!(cached.inner.calls.get(), 1);
        let path = root.path().join(CACHE_DIR).join("u1.json");
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // Another name under the same uid is not served from this entry.
        assert_eq!(cache.get(&pod("other", Some("u1"))), None);

        remove_entry(root.path(), "u1");
        assert!(!path.exists());
        cached.lookup(&pod("p", Some("u1"))).unwrap();
        assert_eq!(cached.inner.calls.get(), 2);
    }

    #[test]
    fn no_uid_no_cache_and_errors_are_not_cached() {
        let root = tempfile::tempdir().unwrap();
        let cache =
            PodGroupsCache::new(root.path(), Duration::from_secs(3600), CacheWrites::Allowed);
        let cached = CachedSource::new(source("u1"), cache);
        cached.lookup(&pod("p", None)).unwrap();
        cached.lookup(&pod("p", None)).unwrap();
        assert_eq!(cached.inner.calls.get(), 2);
        assert!(!root.path().join(CACHE_DIR).exists());
        assert!(cached.lookup(&pod("missing", Some("u1"))).is_err());
        assert!(cached.lookup(&pod("missing", Some("u1"))).is_err());
        assert_eq!(cached.inner.calls.get(), 4);
    }

    #[test]
    fn unsafe_uids_are_never_file_names() {
        for uid in ["", "../x", "a/b", ".hidden", "a b", &"x".repeat(200)] {
            assert!(!valid_uid(uid), "{uid}");
        }
        assert!(valid_uid("5f1c9f1e-2f6a-4c1e-9d8e-1a2b3c4d5e6f"));
        let root = tempfile::tempdir().unwrap();
        let cache =
            PodGroupsCache::new(root.path(), Duration::from_secs(3600), CacheWrites::Allowed);
        let cached = CachedSource::new(source("../../evil"), cache);
        cached.lookup(&pod("p", Some("../../evil"))).unwrap();
        cached.lookup(&pod("p", Some("../../evil"))).unwrap();
        assert_eq!(cached.inner.calls.get(), 2);
        remove_entry(root.path(), "../../evil");
    }

    #[test]
    fn old_entries_are_ignored_and_swept() {
        let root = tempfile::tempdir().unwrap();
        let cache = PodGroupsCache::new(root.path(), Duration::from_secs(60), CacheWrites::Allowed);
        let cached = CachedSource::new(source("u1"), cache.clone());
        cached.lookup(&pod("p", Some("u1"))).unwrap();
        let dir = root.path().join(CACHE_DIR);
        // Age the entry: both its recorded time and its mtime.
        let path = dir.join("u1.json");
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        v["stored_at"] = serde_json::json!(now_secs() - 3600);
        std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(cache.get(&pod("p", Some("u1"))), None);
        let old = SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let leftover = dir.join(".u9.1.2.tmp");
        std::fs::write(&leftover, b"{").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&leftover)
            .unwrap()
            .set_modified(old)
            .unwrap();
        // Writing another entry sweeps.
        let other = CachedSource::new(source("u2"), cache);
        other.lookup(&pod("q", Some("u2"))).unwrap();
        assert!(!path.exists());
        assert!(!leftover.exists());
        assert!(dir.join("u2.json").exists());
    }

    #[test]
    fn corrupt_or_foreign_entries_are_misses() {
        let root = tempfile::tempdir().unwrap();
        let cache =
            PodGroupsCache::new(root.path(), Duration::from_secs(3600), CacheWrites::Allowed);
        let dir = root.path().join(CACHE_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("u1.json"), b"{ not json").unwrap();
        assert_eq!(cache.get(&pod("p", Some("u1"))), None);
        std::os::unix::fs::symlink("/etc/hostname", dir.join("u2.json")).unwrap();
        assert_eq!(cache.get(&pod("p", Some("u2"))), None);
    }

    #[test]
    fn concurrent_writers_leave_whole_entries() {
        let root = tempfile::tempdir().unwrap();
        let cache =
            PodGroupsCache::new(root.path(), Duration::from_secs(3600), CacheWrites::Allowed);
        let groups = PodGroups {
            uid: "u1".into(),
            supplemental_groups: (0..2000).collect(),
            fs_group: None,
            ..Default::default()
        };
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..20 {
                        cache.put(&pod("p", Some("u1")), &groups, "test");
                        if let Some(got) = cache.get(&pod("p", Some("u1"))) {
                            assert_eq!(got, groups);
                        }
                    }
                });
            }
        });
        assert_eq!(cache.get(&pod("p", Some("u1"))), Some(groups));
        let leftovers: Vec<_> = std::fs::read_dir(root.path().join(CACHE_DIR))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }
}

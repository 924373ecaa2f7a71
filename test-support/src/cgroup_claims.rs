//! Which cgroup trees the live private containerds of this process will sweep.
//!
//! A [`crate::containerd::Containerd`] kills every process under its cleanup cgroups when it
//! stops — also when a test restarts it. Two instances of one test process whose cleanup trees
//! overlap therefore kill each other's containers, shims' children and half-started runtime
//! processes (seen as "write init-p: broken pipe" from runc and "waiting for intermediate
//! process: BrokenChannel" from this runtime in whichever test happened to be creating a
//! container). Claiming the trees when an instance starts turns that race into an immediate,
//! named error.

use std::sync::Mutex;

use anyhow::{Result, bail};

static CLAIMED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The cleanup cgroups of one live instance; released on drop.
#[derive(Debug)]
pub struct CgroupClaim {
    paths: Vec<String>,
}

impl CgroupClaim {
    /// Claims `paths` (relative to each hierarchy's root, e.g. `/strict-sg-e2e-1234`). Fails if
    /// one of them equals, contains or lies inside a tree another live claim holds, or if two of
    /// them overlap each other.
    pub fn take(paths: &[String]) -> Result<Self> {
        let wanted: Vec<String> = paths.iter().map(|p| normalize(p)).collect();
        let mut claimed = CLAIMED
            .lock()
            .map_err(|_| anyhow::anyhow!("the cgroup claim registry is poisoned"))?;
        for (i, path) in wanted.iter().enumerate() {
            if let Some(held) = claimed.iter().find(|held| overlaps(held, path)) {
                bail!(
                    "cleanup cgroup {path:?} overlaps {held:?}, which another live containerd of \
                     this process sweeps: give each instance a tree of its own"
                );
            }
            if let Some(other) = wanted[..i].iter().find(|other| overlaps(other, path)) {
                bail!("cleanup cgroups {other:?} and {path:?} overlap");
            }
        }
        claimed.extend(wanted.iter().cloned());
        Ok(Self { paths: wanted })
    }
}

impl Drop for CgroupClaim {
    fn drop(&mut self) {
        // A poisoned registry only means another thread panicked while holding it; the list
        // itself is still consistent (every update is one push or one retain).
        let mut claimed = CLAIMED.lock().unwrap_or_else(|e| e.into_inner());
        for path in &self.paths {
            if let Some(at) = claimed.iter().position(|held| held == path) {
                claimed.swap_remove(at);
            }
        }
    }
}

fn normalize(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether one of two normalized paths is the other or one of its ancestors (the empty path is
/// the root: it overlaps everything).
fn overlaps(a: &str, b: &str) -> bool {
    let below = |long: &str, short: &str| {
        short.is_empty()
            || long == short
            || (long.starts_with(short) && long.as_bytes().get(short.len()) == Some(&b'/'))
    };
    below(a, b) || below(b, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    // Every test uses names of its own: the registry is shared by the tests of this crate.
    #[test]
    fn the_same_tree_cannot_be_claimed_twice_while_held() {
        let first = CgroupClaim::take(&paths(&["/claims-same"])).unwrap();
        let err = CgroupClaim::take(&paths(&["claims-same/"])).unwrap_err();
        assert!(format!("{err:#}").contains("claims-same"), "{err:#}");
        drop(first);
        CgroupClaim::take(&paths(&["/claims-same"])).unwrap();
    }

    #[test]
    fn ancestors_and_descendants_overlap_siblings_do_not() {
        let _held = CgroupClaim::take(&paths(&["/claims-tree/a"])).unwrap();
        assert!(CgroupClaim::take(&paths(&["/claims-tree"])).is_err());
        assert!(CgroupClaim::take(&paths(&["/claims-tree/a/b"])).is_err());
        CgroupClaim::take(&paths(&["/claims-tree/b"])).unwrap();
        CgroupClaim::take(&paths(&["/claims-tree/ab"])).unwrap();
        assert!(CgroupClaim::take(&paths(&["/"])).is_err());
    }

    #[test]
    fn one_claim_may_not_overlap_itself_and_a_refused_claim_holds_nothing() {
        assert!(CgroupClaim::take(&paths(&["/claims-self", "/claims-self/x"])).is_err());
        CgroupClaim::take(&paths(&["/claims-self"])).unwrap();
    }
}

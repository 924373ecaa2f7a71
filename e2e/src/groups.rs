//! Parsing what `id` prints inside a container, and the identity lines of /proc/<pid>/status.

use std::collections::BTreeSet;

/// The numbers of `groups=` in busybox/coreutils `id` output
/// (`uid=1000(alice) gid=1000(alice) groups=1000(alice),50000(bypassed)`), sorted.
pub fn from_id_output(text: &str) -> Option<Vec<u32>> {
    let line = text.lines().find(|l| l.starts_with("uid="))?;
    let list = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("groups="));
    let Some(list) = list else {
        // `id` prints no groups= when the process has no supplementary groups.
        return Some(Vec::new());
    };
    let mut gids: Vec<u32> = list
        .split(',')
        .filter_map(|g| g.split('(').next()?.parse().ok())
        .collect();
    gids.sort_unstable();
    gids.dedup();
    Some(gids)
}

/// `[1000, 60000]` → `"1000,60000"`.
pub fn show(gids: &[u32]) -> String {
    gids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A process's gids: `Gid:` (real, effective, saved, filesystem) and the set of `Groups:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub gid: [u32; 4],
    pub groups: BTreeSet<u32>,
}

impl Identity {
    /// From the text of a /proc/<pid>/status.
    pub fn from_status(text: &str) -> Option<Self> {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name).map(str::trim))
        };
        let gids: Vec<u32> = field("Gid:")?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let gid: [u32; 4] = gids.try_into().ok()?;
        let groups = field("Groups:")?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        Some(Self { gid, groups })
    }

    /// `gid 1000 groups 1000,60000`; all four gids when they differ.
    pub fn show(&self) -> String {
        let gid = if self.gid.iter().all(|g| *g == self.gid[0]) {
            self.gid[0].to_string()
        } else {
            self.gid
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join("/")
        };
        let groups: Vec<u32> = self.groups.iter().copied().collect();
        format!(
            "gid {gid} groups {}",
            if groups.is_empty() {
                "none".to_owned()
            } else {
                show(&groups)
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let text = "Name:\tcat\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t50000\t1000\n\
                    FDSize:\t64\nGroups:\t60000 1000 60000 \nNStgid:\t7\n";
        let id = Identity::from_status(text).unwrap();
        assert_eq!(id.gid, [1000, 1000, 50000, 1000]);
        assert_eq!(id.groups, BTreeSet::from([1000, 60000]));
        assert_eq!(id.show(), "gid 1000/1000/50000/1000 groups 1000,60000");
        let none = Identity::from_status("Gid:\t0\t0\t0\t0\nGroups:\t\n").unwrap();
        assert_eq!(none.show(), "gid 0 groups none");
        assert_eq!(Identity::from_status("Gid:\t0\n"), None);
    }

    #[test]
    fn parses_busybox_id() {
        assert_eq!(
            from_id_output("uid=1000(alice) gid=1000(alice) groups=60000,1000(alice)\n"),
            Some(vec![1000, 60000])
        );
        assert_eq!(from_id_output("uid=0(root) gid=0(root)"), Some(Vec::new()));
        assert_eq!(from_id_output("nothing"), None);
    }
}

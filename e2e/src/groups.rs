//! Parsing what `id` prints inside a container.

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

#[cfg(test)]
mod tests {
    use super::*;

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

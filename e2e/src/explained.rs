//! Every place where this runtime may legitimately differ from Kubernetes' own
//! `supplementalGroupsPolicy: Strict` — and only these. Each entry names the comparison case,
//! what the runtime must do there instead of what Strict does, and the README paragraph that
//! tells users why. The comparison fails on any other difference, and on an entry whose
//! difference does not show (the README would then say something untrue).

/// What the runtime does instead of Strict's outcome.
#[derive(Clone, Copy, Debug)]
pub enum Instead {
    /// The container is refused; the CRI error carries every one of these strings.
    Refused(&'static [&'static str]),
    /// The container runs with Strict's groups and gids, but the setgid probe reports this
    /// (`rgid=… egid=… read=…`) in the init process and in an exec.
    Probe(&'static str),
}

#[derive(Clone, Copy, Debug)]
pub struct Explained {
    /// A case key of `strict_oracle::cases`.
    pub case: &'static str,
    pub instead: Instead,
    /// `README.md#<anchor>`: the heading whose paragraph explains it.
    pub readme: &'static str,
}

pub const README_PRIMARY_GID: &str = "README.md#the-primary-gid-an-image-chooses";
pub const README_SETGID: &str = "README.md#setgid-and-file-capability-binaries";

pub const EXPLAINED: &[Explained] = &[
    Explained {
        case: "passwd-gid/granted",
        instead: Instead::Refused(&["runAsGroup", "50000"]),
        readme: README_PRIMARY_GID,
    },
    Explained {
        case: "setgid/nnp-set",
        instead: Instead::Probe("rgid=1000 egid=1000 read=denied"),
        readme: README_SETGID,
    },
    Explained {
        case: "setgid/nnp-refuse",
        instead: Instead::Refused(&["allowPrivilegeEscalation"]),
        readme: README_SETGID,
    },
];

pub fn for_case(case: &str) -> Option<&'static Explained> {
    EXPLAINED.iter().find(|e| e.case == case)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's anchor of a heading: lowercase, spaces to '-', punctuation but '-' and '_'
    /// dropped.
    fn anchor(heading: &str) -> String {
        heading
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn every_entry_points_at_a_readme_heading() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let anchors: Vec<String> = readme
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .map(|l| anchor(l.trim_start_matches('#')))
            .collect();
        for e in EXPLAINED {
            let wanted = e.readme.strip_prefix("README.md#").unwrap();
            assert!(
                anchors.iter().any(|a| a == wanted),
                "{}: README.md has no heading with anchor #{wanted}",
                e.case
            );
        }
    }

    #[test]
    fn every_entry_names_a_case() {
        let cases = crate::strict_oracle::cases("t", "2.x");
        for e in EXPLAINED {
            assert!(
                cases.iter().any(|c| c.key == e.case),
                "{} is no comparison case",
                e.case
            );
        }
    }
}

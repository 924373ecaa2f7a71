use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use chrono::{DateTime, Utc};
use libcontainer::container::state::{ContainerStatus, State as ContainerState};
use liboci_cli::State;
use serde::Serialize;

use super::load_container;

/// The OCI state document, shaped as youki prints it.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct StateView<'a> {
    pub oci_version: &'a str,
    pub id: &'a str,
    pub status: ContainerStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub bundle: &'a Path,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<&'a HashMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<&'a DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<u32>,
}

impl<'a> From<&'a ContainerState> for StateView<'a> {
    fn from(state: &'a ContainerState) -> Self {
        Self {
            oci_version: &state.oci_version,
            id: &state.id,
            status: state.status,
            pid: state.pid,
            bundle: &state.bundle,
            annotations: state.annotations.as_ref(),
            created: state.created.as_ref(),
            owner: state.creator,
        }
    }
}

pub fn state(args: State, root: &Path) -> Result<()> {
    // Loading refreshes the saved status from the init process's liveness.
    let container = load_container(root, &args.container_id)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&StateView::from(&container.state))?
    );
    Ok(())
}

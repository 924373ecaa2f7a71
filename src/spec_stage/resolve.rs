//! Step 3: the pod's groups, from whatever source the caller passes in. Every way of not
//! knowing them becomes one fail-closed error that names the pod and the container.

use anyhow::{Result, anyhow};

use crate::pod::{PodGroups, PodGroupsSource, PodRef};

/// Asks `source` for `pod`'s groups; any failure refuses the container.
pub fn resolve(
    source: &dyn PodGroupsSource,
    pod: &PodRef,
    container_id: &str,
) -> Result<PodGroups> {
    source.lookup(pod).map_err(|err| {
        anyhow!(
            "cannot determine the supplementary groups of pod {pod} for container \
             {container_id}: {err:#}; refusing to create it with unfiltered groups"
        )
    })
}

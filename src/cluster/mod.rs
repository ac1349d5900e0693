//! Beyond one machine: the same sandbox plan delivered through a cluster's
//! or an editor's own machinery (docs/cluster.md).

pub mod devcontainer;
pub mod k8s;
pub mod kubeapi;
pub mod swarm;

//! Beyond one machine: the agents' credentials in cluster services, through
//! the cluster's own secret store (docs/cluster.md).

pub mod swarm;

//! Cluster configuration: the TOML format, its lookup, validation and the
//! effective [`Config`] the rest of distex reads.

mod detect;
mod file;
mod load;
mod model;

pub use detect::{Detected, cores};
pub use file::ClusterFile;
pub use load::{Location, STARTER, load, locate, parse, user_config_path, valid_node_name};
pub use model::*;

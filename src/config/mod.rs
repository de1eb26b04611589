//! Cluster configuration: the TOML format, its lookup, validation and the
//! effective [`Config`] the rest of distex reads.

mod detect;
mod file;
mod load;
mod model;

#[cfg(test)]
pub(crate) use detect::Detected;
pub(crate) use detect::cores;
pub(crate) use file::ClusterFile;
#[cfg(test)]
pub(crate) use load::parse;
pub(crate) use load::{STARTER, is_variable_name, load, user_config_path};
pub(crate) use model::*;

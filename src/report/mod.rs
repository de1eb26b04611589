//! Rendering results for people ([`human`]) and programs ([`json`]).

pub mod human;
pub mod json;
pub mod process_human;
pub mod process_json;
pub mod tasks;

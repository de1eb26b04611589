//! Rendering results for people ([`human`]) and programs ([`json`]).

pub mod human;
pub mod json;
pub mod tasks;
pub mod process_human;
